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
// active it waits for the stream's next announcement, with a standing pull
// on the queue it pulled from last (standing.go). A worker never holds
// more jobs than it has slots, so idle capacity elsewhere in the fleet is
// used.
func (w *Worker) fetchLoop(ctx context.Context) {
	defer close(w.fetching)
	backoff := 50 * time.Millisecond
	var standing *standingPull
	defer func() {
		if standing != nil {
			<-standing.over // within standingExpiry; a job it took goes back
		}
	}()
	for {
		if err := w.queues.scan(ctx, false); err != nil && !w.pause(ctx, err, &backoff) {
			return
		}
		standing = w.afterStanding(standing)
		permits, err := w.reserve(ctx, standing)
		if err != nil {
			return // stopping
		}
		picks := w.queues.plan(len(permits))
		if len(picks) == 0 {
			if standing == nil {
				standing, permits = w.standBy(ctx, permits)
			}
			release(permits)
			if !w.queues.wait(ctx, standing.endedC()) {
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

// reserve reserves the free request slots for a round of pulls, waiting
// for one. While a standing pull waits, only the other free slots count:
// with none, reserve waits for a job to end or for the standing pull's
// slot, within standingExpiry.
func (w *Worker) reserve(ctx context.Context, standing *standingPull) ([]*manager.Permit, error) {
	slots, n := w.mgr.Slots(), w.cfg.Manager.MaxConcurrentRequests
	if standing != nil {
		if permits := slots.TryReserve(n); len(permits) > 0 {
			return permits, nil
		}
	}
	return slots.Reserve(ctx, n)
}

// standBy starts a standing pull with one of permits on the queue pulled
// from last, if any; it returns the pull (or nil) and the permits left.
//
// The last queue pulled from is where a job may be waiting that the pull
// did not find: the stream announces a job before its consumer counts it,
// so a pull right after the announcement can come back empty. A standing
// pull there gets that job as the consumer counts it, where the fetch
// loop would find it at its next rescan only.
func (w *Worker) standBy(ctx context.Context, permits []*manager.Permit) (*standingPull, []*manager.Permit) {
	q, ok := w.queues.lastPulled()
	if !ok || ctx.Err() != nil || len(permits) == 0 {
		return nil, permits
	}
	s := w.stand(ctx, q, permits[0])
	if s == nil {
		w.queues.forget(q) // not again until a pull from it succeeds
	}
	return s, permits[1:]
}

// afterStanding returns s while it waits, nil once it has ended. One that
// failed (its consumer deleted, say) is not started again on that queue
// until a pull from it succeeds.
func (w *Worker) afterStanding(s *standingPull) *standingPull {
	if s == nil || !s.ended() {
		return s
	}
	if s.err != nil {
		w.cfg.Logger.Debug("standing pull failed", "tenant", s.queue.tenant, "priority", s.queue.priority(), "err", s.err)
		w.queues.forget(s.queue)
	}
	return nil
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
	w.queues.pulled(p.queue)
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
		handBack(msg, permit) // stopping
		return
	}
	if !w.handlers.Go(func() { w.mgr.Handle(msg, permit) }) { // owned by the worker: Stop's handlers.Close waits for it
		handBack(msg, permit) // the pool closed under us
	}
}

// handle hands a pulled job to the manager on this goroutine (one of the
// pool's), or back to the queue when stopping.
func (w *Worker) handle(ctx context.Context, msg jetstream.Msg, permit *manager.Permit) {
	if ctx.Err() != nil {
		handBack(msg, permit)
		return
	}
	w.mgr.Handle(msg, permit)
}

// handBack gives a pulled job straight back to the queue, and its permit.
func handBack(msg jetstream.Msg, permit *manager.Permit) {
	_ = msg.Nak()
	permit.Release()
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
