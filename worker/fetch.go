package worker

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// fetchLoop pulls jobs while the pool has room: it takes every free
// request slot, asks the consumer for exactly that many jobs, and hands
// each job with its slot to the manager. A worker never holds more jobs
// than it has slots, so idle capacity elsewhere in the fleet is used.
func (w *Worker) fetchLoop(ctx context.Context) {
	defer close(w.fetching)
	slots := w.mgr.Slots()
	backoff := 50 * time.Millisecond
	for {
		if err := slots.AcquireRequest(ctx); err != nil {
			return // stopping
		}
		n := 1 + slots.TryAcquireRequests(w.cfg.Manager.MaxConcurrentRequests-1)
		// The pull request is not tied to ctx: cancelling it would strand
		// jobs the server already sent. Stop waits at most FetchWait.
		batch, err := w.consumer.Fetch(n, jetstream.FetchMaxWait(w.cfg.FetchWait))
		if err != nil {
			slots.ReleaseRequests(n)
			if !w.pause(ctx, err, &backoff) {
				return
			}
			continue
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			if ctx.Err() != nil {
				_ = msg.Nak() // stopping: hand it straight back
				slots.ReleaseRequests(1)
				continue
			}
			w.handlers.Go(func() { w.mgr.Handle(msg) }) // owned by the worker: Stop's handlers.Close waits for it
		}
		slots.ReleaseRequests(n - got)
		if err := batch.Error(); err != nil {
			if !w.pause(ctx, err, &backoff) {
				return
			}
			continue
		}
		backoff = 50 * time.Millisecond
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
