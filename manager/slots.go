package manager

import (
	"context"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// Slots are a worker's pools: requests being routed or led, leaders
// waiting for an upstream slot, jobs waiting for their tenant (parked),
// upstream streams, and followers (including cache hits).
//
// The fetch loop pulls a job only with a permit for it (Reserve), one per
// free request slot. A leader that must wait for an upstream slot trades
// its request slot for a waiting slot while one is free, so the worker
// goes on pulling while its upstream is the bottleneck: jobs that turn out
// to be cache hits or followers are served at once instead of queueing
// behind slow generations. A worker thus holds at most
// MaxConcurrentRequests jobs that route or lead plus MaxWaitingLeaders
// leaders that wait (or went on to lead) beyond them.
//
// A job that must wait for its tenant — paused, or at a limit it waits
// for (tenants.go, quota.go) — trades its request or waiting slot for a
// parked slot while one is free, so one tenant's waiting jobs do not stop
// the worker from pulling other tenants' (MaxParkedJobs more jobs).
type Slots struct {
	requests  pool
	waiting   pool
	parked    pool
	llm       pool
	followers pool
}

// pool is a semaphore that knows how many of its slots jobs hold, for the
// slots gauges. The fetch loop reserves slots for its pull before jobs
// exist; those count as used only once a job takes them.
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

// reserve reserves up to max slots without waiting, not yet used by a job.
func (p *pool) reserve(max int) int {
	n := 0
	for n < max && p.sem.TryAcquire(1) {
		n++
	}
	return n
}

// take marks a reserved slot as held by a job.
func (p *pool) take() { p.used.Add(1) }

// release gives back a slot a job held.
func (p *pool) release() {
	p.used.Add(-1)
	p.unreserve(1)
}

// unreserve gives back n reserved slots no job took.
func (p *pool) unreserve(n int) { p.sem.Release(int64(n)) }

// waitIdle waits until every slot is free.
func (p *pool) waitIdle(ctx context.Context) error {
	if p.size == 0 {
		return nil
	}
	if err := p.sem.Acquire(ctx, p.size); err != nil {
		return err
	}
	p.sem.Release(p.size)
	return nil
}

func newSlots(c Config) *Slots {
	return &Slots{
		requests:  newPool(c.MaxConcurrentRequests),
		waiting:   newPool(max(c.MaxWaitingLeaders, 0)),
		parked:    newPool(max(c.MaxParkedJobs, 0)),
		llm:       newPool(c.MaxConcurrentLLMStreams),
		followers: newPool(c.MaxConcurrentFollowers),
	}
}

// Reserve waits for a free request slot, reserves it and every other free
// one up to max, and returns a permit per slot. Hand each permit to Handle
// with the job pulled for it, and Release the permits no job arrived for.
// Once ctx is done it returns ctx's error, even with slots free.
func (s *Slots) Reserve(ctx context.Context, max int) ([]*Permit, error) {
	if err := s.requests.sem.Acquire(ctx, 1); err != nil {
		return nil, err
	}
	return s.requestPermits(1 + s.requests.reserve(max-1)), nil
}

// TryReserve reserves every free request slot up to max without waiting,
// and returns a permit per slot: none when every slot is taken or
// reserved.
func (s *Slots) TryReserve(max int) []*Permit {
	return s.requestPermits(s.requests.reserve(max))
}

// requestPermits makes a permit for each of n reserved request slots.
func (s *Slots) requestPermits(n int) []*Permit {
	out := make([]*Permit, n)
	for i := range out {
		out[i] = &Permit{s: s, kind: slotRequest}
	}
	return out
}

// WaitIdle waits until every slot of every pool is free: all requests and
// generations have ended. It returns ctx's error if that comes first.
// Jobs move from request slots to waiting, parked or follower slots, from
// waiting to parked or follower slots and from parked to follower slots,
// never back, so checking the pools in this order misses none.
func (s *Slots) WaitIdle(ctx context.Context) error {
	for _, p := range []*pool{&s.requests, &s.waiting, &s.parked, &s.followers, &s.llm} {
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

// Usage returns each pool's use, by pool name: requests, waiting, parked,
// llm, followers.
func (s *Slots) Usage() map[string]SlotUsage {
	return map[string]SlotUsage{
		"requests":  {s.requests.used.Load(), s.requests.size},
		"waiting":   {s.waiting.used.Load(), s.waiting.size},
		"parked":    {s.parked.used.Load(), s.parked.size},
		"llm":       {s.llm.used.Load(), s.llm.size},
		"followers": {s.followers.used.Load(), s.followers.size},
	}
}

// slotKind is the pool a permit holds a slot of.
type slotKind uint8

const (
	slotNone slotKind = iota
	slotRequest
	slotWaiting
	slotFollower
	slotParked
)

// Permit is the slot one pulled job holds, from Reserve until the job is
// settled. The job's request moves it to a follower slot; a generation the
// request leads moves it to a waiting slot while it waits for the
// upstream. Its methods are safe for concurrent use.
type Permit struct {
	s     *Slots
	mu    sync.Mutex
	kind  slotKind
	taken bool
}

// Release gives back a permit no job took (the pull brought fewer jobs).
func (p *Permit) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.taken || p.kind == slotNone {
		return
	}
	p.poolOf(p.kind).unreserve(1)
	p.kind = slotNone
}

// take marks the permit as held by a job; false for a nil permit, one
// released, or one a job took before (each pull's permit serves one job).
func (p *Permit) take() bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.taken || p.kind == slotNone {
		return false
	}
	p.taken = true
	p.poolOf(p.kind).take()
	return true
}

func (p *Permit) poolOf(k slotKind) *pool {
	switch k {
	case slotRequest:
		return &p.s.requests
	case slotWaiting:
		return &p.s.waiting
	case slotParked:
		return &p.s.parked
	default:
		return &p.s.followers
	}
}

// release gives back the slot the job held.
func (p *Permit) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.kind != slotNone {
		p.poolOf(p.kind).release()
		p.kind = slotNone
	}
}

// moveTo makes the permit hold a slot of kind k, already acquired from
// its pool, giving back the one it held; when the permit was released
// meanwhile, k's slot goes back too.
func (p *Permit) moveTo(k slotKind) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.kind != slotNone {
		p.poolOf(p.kind).release()
		p.kind = k
	} else {
		p.poolOf(k).release()
	}
}

// park trades a request slot for a waiting slot, if one is free: the
// leader is about to wait for the upstream, and its request slot lets
// the worker pull a job that may not need to.
func (p *Permit) park() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.kind == slotRequest && p.s.waiting.tryAcquire() { // never blocks: safe under mu
		p.s.requests.release()
		p.kind = slotWaiting
	}
}

// parkForTenant trades a request or waiting slot for a parked slot, if
// one is free: the job is about to wait for its tenant (paused, or at a
// limit), and its slot lets the worker pull other tenants' jobs. It keeps
// the parked slot until it ends, or becomes a follower.
func (p *Permit) parkForTenant() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if (p.kind == slotRequest || p.kind == slotWaiting) && p.s.parked.tryAcquire() { // never blocks: safe under mu
		p.poolOf(p.kind).release()
		p.kind = slotParked
	}
}
