package manager

import (
	"context"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// Slots are a worker's three pools: requests being routed or led, upstream
// streams, and followers (including cache hits).
type Slots struct {
	requests  pool
	llm       pool
	followers pool
}

// pool is a semaphore that knows how many of its slots jobs hold, for the
// slots gauges. The fetch loop reserves request slots for its pull before
// jobs exist; those count as used only once a job takes them.
type pool struct {
	sem  *semaphore.Weighted
	size int64
	used atomic.Int64
}

func newPool(size int) pool {
	return pool{sem: semaphore.NewWeighted(int64(size)), size: int64(size)}
}

// acquire waits for a slot and takes it.
func (p *pool) acquire(ctx context.Context) error {
	if err := p.sem.Acquire(ctx, 1); err != nil {
		return err
	}
	p.used.Add(1)
	return nil
}

// tryAcquire takes a slot if one is free.
func (p *pool) tryAcquire() bool {
	if !p.sem.TryAcquire(1) {
		return false
	}
	p.used.Add(1)
	return true
}

// take marks a reserved slot as held by a job.
func (p *pool) take() { p.used.Add(1) }

// release gives back a slot a job held.
func (p *pool) release() {
	p.used.Add(-1)
	p.sem.Release(1)
}

// waitIdle waits until every slot is free.
func (p *pool) waitIdle(ctx context.Context) error {
	if err := p.sem.Acquire(ctx, p.size); err != nil {
		return err
	}
	p.sem.Release(p.size)
	return nil
}

func newSlots(c Config) *Slots {
	return &Slots{
		requests:  newPool(c.MaxConcurrentRequests),
		llm:       newPool(c.MaxConcurrentLLMStreams),
		followers: newPool(c.MaxConcurrentFollowers),
	}
}

// AcquireRequest waits for one request slot, reserved for a pull. The
// worker's fetch loop reserves one per job it asks for and hands each to
// Handle with its job (Handle takes it; see take).
func (s *Slots) AcquireRequest(ctx context.Context) error { return s.requests.sem.Acquire(ctx, 1) }

// TryAcquireRequests reserves up to max more request slots without waiting
// and returns how many it reserved.
func (s *Slots) TryAcquireRequests(max int) int {
	n := 0
	for n < max && s.requests.sem.TryAcquire(1) {
		n++
	}
	return n
}

// ReleaseRequests gives back n reserved request slots no job arrived for.
func (s *Slots) ReleaseRequests(n int) {
	if n > 0 {
		s.requests.sem.Release(int64(n))
	}
}

// WaitIdle waits until every slot of every pool is free: all requests and
// generations have ended. It returns ctx's error if that comes first.
// Requests only move from request slots to follower slots, never back,
// so checking the pools in this order misses none.
func (s *Slots) WaitIdle(ctx context.Context) error {
	for _, p := range []*pool{&s.requests, &s.followers, &s.llm} {
		if err := p.waitIdle(ctx); err != nil {
			return err
		}
	}
	return nil
}

// SlotUsage is one pool's use.
type SlotUsage struct {
	Used  int64 `json:"used"`
	Total int64 `json:"total"`
}

// Usage returns each pool's use, by pool name: requests, llm, followers.
func (s *Slots) Usage() map[string]SlotUsage {
	return map[string]SlotUsage{
		"requests":  {s.requests.used.Load(), s.requests.size},
		"llm":       {s.llm.used.Load(), s.llm.size},
		"followers": {s.followers.used.Load(), s.followers.size},
	}
}
