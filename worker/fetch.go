package worker

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/manager"
)

// fetchLoop pulls jobs while the pool has room: it reserves every free
// request slot, asks the consumer
// for exactly that many jobs, and hands each job with its permit to the
// manager. A worker never holds more jobs than it has slots, so idle
// capacity elsewhere in the fleet is used.
func (w *Worker) fetchLoop(ctx context.Context) {
	defer close(w.fetching)
	slots := w.mgr.Slots()
	backoff := 50 * time.Millisecond
	for {
		permits, err := slots.Reserve(ctx, w.cfg.Manager.MaxConcurrentRequests)
		if err != nil {
			return // stopping
		}
		// The pull request is not tied to ctx: cancelling it would strand
		// jobs the server already sent. Stop waits at most FetchWait.
		batch, err := w.consumer.Fetch(len(permits), jetstream.FetchMaxWait(w.cfg.FetchWait))
		if err != nil {
			release(permits)
			if !w.pause(ctx, err, &backoff) {
				return
			}
			continue
		}
		got := 0
		for msg := range batch.Messages() {
			permit := permits[got]
			got++
			if ctx.Err() != nil {
				_ = msg.Nak() // stopping: hand it straight back
				permit.Release()
				continue
			}
			if !w.handlers.Go(func() { w.mgr.Handle(msg, permit) }) { // owned by the worker: Stop's handlers.Close waits for it
				_ = msg.Nak() // the pool closed under us: hand it back
				permit.Release()
			}
		}
		release(permits[got:])
		if err := batch.Error(); err != nil {
			if !w.pause(ctx, err, &backoff) {
				return
			}
			continue
		}
		backoff = 50 * time.Millisecond
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
