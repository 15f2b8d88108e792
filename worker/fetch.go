package worker

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/manager"
)

// fetchLoop pulls jobs while the pool has room: it reserves every free
// request slot, shares those pulls among the queues with jobs (queues.plan:
// by priority, then tenant), asks each queue for its share without waiting,
// and hands each job with its permit to the manager. With no queue
// active it waits for the stream's next announcement. A worker never holds
// more jobs than it has slots, so idle capacity elsewhere in the fleet is
// used.
func (w *Worker) fetchLoop(ctx context.Context) {
	defer close(w.fetching)
	slots := w.mgr.Slots()
	backoff := 50 * time.Millisecond
	for {
		if err := w.queues.scan(ctx, false); err != nil && !w.pause(ctx, err, &backoff) {
			return
		}
		permits, err := slots.Reserve(ctx, w.cfg.Manager.MaxConcurrentRequests)
		if err != nil {
			return // stopping
		}
		picks := w.queues.plan(len(permits))
		if len(picks) == 0 {
			release(permits)
			if !w.queues.wait(ctx) {
				return
			}
			if err := w.queues.scan(ctx, false); err != nil && !w.pause(ctx, err, &backoff) {
				return
			}
			continue
		}
		failed := false
		for _, p := range picks {
			mine := permits[:p.n]
			permits = permits[p.n:]
			got, err := w.pull(ctx, p, mine)
			if err != nil {
				failed = true
				if !w.pause(ctx, err, &backoff) {
					release(permits)
					return
				}
			}
			if got < p.n {
				w.queues.drop(p)
			}
		}
		release(permits)
		if !failed {
			backoff = 50 * time.Millisecond
		}
	}
}

// pull fetches up to p.n jobs from p's queue and hands them to the
// manager with permits; it releases the permits no job arrived for. The
// pull request is not tied to ctx: cancelling it would strand jobs the
// server already sent.
func (w *Worker) pull(ctx context.Context, p pick, permits []*manager.Permit) (int, error) {
	batch, err := w.queues.fetch(ctx, p)
	if err != nil {
		release(permits)
		return 0, err
	}
	got := 0
	for msg := range batch.Messages() {
		permit := permits[got]
		got++
		w.dispatch(ctx, msg, permit)
	}
	release(permits[got:])
	if err := batch.Error(); err != nil {
		w.queues.forget(p.queue)
		return got, err
	}
	return got, nil
}

// dispatch hands a pulled job to the manager on a goroutine of the pool,
// or back to the queue when stopping.
func (w *Worker) dispatch(ctx context.Context, msg jetstream.Msg, permit *manager.Permit) {
	if ctx.Err() != nil {
		_ = msg.Nak() // stopping: hand it straight back
		permit.Release()
		return
	}
	if !w.handlers.Go(func() { w.mgr.Handle(msg, permit) }) { // owned by the worker: Stop's handlers.Close waits for it
		_ = msg.Nak() // the pool closed under us: hand it back
		permit.Release()
	}
}

// release gives back permits no job arrived for.
func release(permits []*manager.Permit) {
	for _, p := range permits {
		p.Release()
	}
}

// pause logs a fetch failure and waits before the next try, doubling the
// wait up to 5s. It returns false when the worker is stopping.
func (w *Worker) pause(ctx context.Context, err error, backoff *time.Duration) bool {
	w.cfg.Logger.Warn("fetching jobs failed; retrying", "err", err, "in", *backoff)
	select {
	case <-ctx.Done():
		return false
	case <-time.After(*backoff):
	}
	*backoff = min(2**backoff, 5*time.Second)
	return true
}
