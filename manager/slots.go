package manager

import (
	"context"

	"golang.org/x/sync/semaphore"
)

// Slots are a worker's three pools: requests being routed or led, upstream
// streams, and followers (including cache hits).
type Slots struct {
	requests  *semaphore.Weighted
	llm       *semaphore.Weighted
	followers *semaphore.Weighted

	// sizes, for gauges and draining
	nRequests, nLLM, nFollowers int64
}

func newSlots(c Config) *Slots {
	return &Slots{
		requests:   semaphore.NewWeighted(int64(c.MaxConcurrentRequests)),
		llm:        semaphore.NewWeighted(int64(c.MaxConcurrentLLMStreams)),
		followers:  semaphore.NewWeighted(int64(c.MaxConcurrentFollowers)),
		nRequests:  int64(c.MaxConcurrentRequests),
		nLLM:       int64(c.MaxConcurrentLLMStreams),
		nFollowers: int64(c.MaxConcurrentFollowers),
	}
}

// AcquireRequest waits for one request slot. The worker's fetch loop takes
// one per job it pulls and hands it to Handle.
func (s *Slots) AcquireRequest(ctx context.Context) error { return s.requests.Acquire(ctx, 1) }

// TryAcquireRequests takes up to max more request slots without waiting
// and returns how many it took.
func (s *Slots) TryAcquireRequests(max int) int {
	n := 0
	for n < max && s.requests.TryAcquire(1) {
		n++
	}
	return n
}

// ReleaseRequests gives back n request slots the fetch loop took but did
// not use.
func (s *Slots) ReleaseRequests(n int) {
	if n > 0 {
		s.requests.Release(int64(n))
	}
}

// WaitIdle waits until every slot of every pool is free: all requests and
// generations have ended. It returns ctx's error if that comes first.
func (s *Slots) WaitIdle(ctx context.Context) error {
	pools := []struct {
		sem *semaphore.Weighted
		n   int64
	}{{s.requests, s.nRequests}, {s.followers, s.nFollowers}, {s.llm, s.nLLM}}
	for _, p := range pools {
		if err := p.sem.Acquire(ctx, p.n); err != nil {
			return err
		}
		p.sem.Release(p.n)
	}
	return nil
}
