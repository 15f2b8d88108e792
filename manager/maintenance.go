package manager

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Fleet maintenance is work done once for the whole fleet rather than by
// every worker: ending jobs queued past their queue timeout
// (maintenance_queuetimeout.go), giving up jobs the consumer stopped
// delivering (maxdeliver.go) and ending jobs over their tenant's own
// max_queued (maintenance_quota.go). One worker at a time does it, the
// maintainer, as in River's leader-only maintenance. Workers elect it with
// the leaders' lease (lease.go) under maintenanceKey in the in-flight
// bucket: the holder renews it every third of the bucket's TTL and
// releases it when it stops, so the next worker to try takes over within a
// third of the TTL; a maintainer that dies is replaced once its key
// expires. Every task writes only under a condition the server checks, so
// two maintainers for a moment (one that has not yet noticed its lease is
// lost) do no harm.

// maintenanceKey is the maintainer's lease in the in-flight bucket. It can
// never be a dedupe key (<tenant>.<64 hex digits>): it has no dot.
const maintenanceKey = "_maintenance"

// maintainer campaigns for the maintenance lease and, while it holds it,
// runs the maintenance tasks every MaintenanceInterval.
type maintainer struct {
	m     *Manager
	every time.Duration // between scans while maintaining
	retry time.Duration // between attempts to win the lease: a third of its TTL
	hooks atomic.Pointer[maintenanceHooks]

	// Owned by the run goroutine.
	queue     *queueTimeouts
	exhausted map[uint64]bool // jobs the last scan found given up by the consumer (maxdeliver.go)

	waiting      atomic.Int64 // jobs no worker has pulled, at the last scan
	waitingKnown atomic.Bool  // a scan counted them

	mu      sync.Mutex
	leading bool
	changed chan struct{} // closed and replaced whenever leading changes
	cancel  context.CancelFunc
	halted  bool // Stop was called
	stopped chan struct{}
}

func newMaintainer(m *Manager) *maintainer {
	mt := &maintainer{m: m, every: m.cfg.MaintenanceInterval, retry: m.leaseTTL() / 3,
		changed: make(chan struct{}), stopped: make(chan struct{})}
	mt.hooks.Store(&noMaintenanceHooks)
	return mt
}

// maintenanceHooks let a test watch and steer the maintainer. In
// production they are noMaintenanceHooks.
type maintenanceHooks struct {
	now      func() time.Time             // the clock queue deadlines are compared with
	scanned  func()                       // a scan read the consumer's state; no job read yet
	ended    func(seq uint64)             // a queue ending was stored for the job; not yet deleted
	left     func(seq uint64)             // an overdue job's reply was not empty: left to its worker
	advisory func(seq uint64, acted bool) // a max-deliveries advisory was checked
}

var noMaintenanceHooks = maintenanceHooks{now: time.Now, scanned: func() {}, ended: func(uint64) {}, left: func(uint64) {},
	advisory: func(uint64, bool) {}}

func (mt *maintainer) hook() *maintenanceHooks { return mt.hooks.Load() }

// Start campaigns for the lease in the background and maintains while it
// holds it. ctx is not used: the maintainer runs until Stop.
func (mt *maintainer) Start(context.Context) error {
	mt.mu.Lock()
	defer mt.mu.Unlock()
	if mt.cancel != nil || mt.halted {
		return errors.New("manager: maintainer already started or stopped")
	}
	ctx, cancel := context.WithCancel(context.Background())
	mt.cancel = cancel
	go func() { // owned by the maintainer: Stop cancels it, Stopped is closed when it returns
		defer close(mt.stopped)
		mt.run(ctx)
	}()
	return nil
}

// Stop stops maintaining and releases the lease, so another worker takes
// over at once; it waits for that or ctx. Safe twice, and before Start.
func (mt *maintainer) Stop(ctx context.Context) error {
	mt.mu.Lock()
	if !mt.halted {
		mt.halted = true
		if mt.cancel == nil {
			close(mt.stopped)
		} else {
			mt.cancel()
		}
	}
	mt.mu.Unlock()
	select {
	case <-mt.stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stopped is closed once the maintainer has stopped.
func (mt *maintainer) Stopped() <-chan struct{} { return mt.stopped }

// state reports whether this worker maintains the fleet now, and a channel
// closed when that changes.
func (mt *maintainer) state() (bool, <-chan struct{}) {
	mt.mu.Lock()
	defer mt.mu.Unlock()
	return mt.leading, mt.changed
}

func (mt *maintainer) setLeading(v bool) {
	mt.mu.Lock()
	defer mt.mu.Unlock()
	if mt.leading != v {
		mt.leading = v
		close(mt.changed)
		mt.changed = make(chan struct{})
	}
}

func (mt *maintainer) run(ctx context.Context) {
	lost := make(chan struct{}, 1)
	var held *lease
	defer func() {
		if held != nil {
			mt.resign(held)
		}
	}()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-lost:
			held.stopKeeping()
			held = nil
			mt.setLeading(false)
			mt.m.cfg.Logger.Warn("maintenance lease lost; another worker may maintain the fleet now")
			t.Reset(mt.retry)
			continue
		case <-t.C:
		}
		if held == nil {
			held = mt.campaign(lost)
		}
		if held == nil {
			t.Reset(mt.retry)
			continue
		}
		mt.maintain(ctx)
		t.Reset(mt.every)
	}
}

// campaign tries once to win the lease; nil when another worker holds it.
func (mt *maintainer) campaign(lost chan struct{}) *lease {
	// Not bounded by Stop: a Create that succeeds while Stop cancels it
	// would leave the lease held until it expires.
	ctx, cancel := context.WithTimeout(context.Background(), mt.retry)
	defer cancel()
	l, _, err := acquireLease(ctx, mt.m.topo.Inflight, maintenanceKey,
		leaseValue{Worker: mt.m.cfg.WorkerID, Since: time.Now().UTC()}, mt.m.leaseTTL())
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) {
			mt.m.cfg.Logger.Warn("cannot campaign for the maintenance lease", "err", err)
		}
		return nil
	}
	l.keep(func() { // on the lease's timer, under its lock: only signal
		select {
		case lost <- struct{}{}:
		default:
		}
	})
	mt.queue = newQueueTimeouts(mt.m)
	mt.exhausted = nil
	mt.setLeading(true)
	mt.m.cfg.Logger.Info("this worker maintains the fleet now", "queue_timeout", mt.m.topo.Config.QueueTimeout)
	return l
}

// resign releases the lease, so another worker takes over at once.
func (mt *maintainer) resign(l *lease) {
	ctx, cancel := context.WithTimeout(context.Background(), mt.retry)
	defer cancel()
	if err := l.release(ctx); err != nil {
		mt.m.cfg.Logger.Warn("maintenance lease not released; it expires by itself", "err", err)
	}
	mt.setLeading(false)
}

// maintain runs every task once, from one reading of the queues' state.
func (mt *maintainer) maintain(ctx context.Context) {
	qs, err := mt.m.readQueues(ctx)
	if err != nil {
		if ctx.Err() == nil {
			mt.m.cfg.Logger.Warn("maintenance: cannot read the queue consumers", "err", err)
		}
		return
	}
	mt.noteWaiting(qs)
	mt.hook().scanned()
	mt.exhausted = mt.m.sweepExhausted(ctx, qs, mt.exhausted)
	mt.queue.sweep(ctx, qs, mt.hook())
	mt.m.enforceMaxQueued(ctx, qs)
}

// noteWaiting keeps the number of jobs no worker has pulled, for the
// chatfleet.queue.waiting gauge: the jobs in the stream but those the
// queues' consumers hold for a worker.
func (mt *maintainer) noteWaiting(qs queueState) {
	held := uint64(0)
	for _, c := range qs.byName {
		held += uint64(c.NumAckPending)
	}
	mt.waiting.Store(int64(qs.msgs - min(held, qs.msgs)))
	mt.waitingKnown.Store(true)
}

// queueWaiting is the last scan's count of waiting jobs, while this worker
// maintains the fleet.
func (mt *maintainer) queueWaiting() (int64, bool) {
	if leading, _ := mt.state(); !leading || !mt.waitingKnown.Load() {
		return 0, false
	}
	return mt.waiting.Load(), true
}
