package worker

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/manager"
)

// standingExpiry is how long a standing pull waits at the server. It
// bounds what a standing pull can hold up: a worker's last free slot
// wanted for another queue's job, and a stopping worker. Each idle worker
// sends a pull this often.
const standingExpiry = 250 * time.Millisecond

// standingPull is a pull request that waits at the server, for one job of
// one queue, while the worker has nothing queued to pull, holding one
// reserved request slot. A job stored meanwhile reaches the worker with
// the stream's announcement of it, not one round trip after: the
// announcement, then a pull, is the path of every other job.
//
// It is never cut short: it ends with its job, or when the server ends it
// after standingExpiry and the slot goes back. Unsubscribing from a pull
// early can lose a job: in a cluster the consumer's leader may send one
// before it hears of the unsubscribe, and the job then waits out its ack
// wait with nobody working on it. So the fetch loop waits for a standing
// pull: when it needs its slot, and when the worker stops.
type standingPull struct {
	queue queue
	over  chan struct{} // closed once it has ended: its job taken, or its slot given back
	err   error         // why it ended without a job, if it failed; read after over
}

// stand starts a standing pull on q with permit, or returns nil and gives
// the permit back when the pull cannot start.
func (w *Worker) stand(ctx context.Context, q queue, permit *manager.Permit) *standingPull {
	c, err := w.queues.consumer(ctx, q)
	if err != nil {
		permit.Release()
		return nil
	}
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(standingExpiry))
	if err != nil {
		permit.Release()
		return nil
	}
	s := &standingPull{queue: q, over: make(chan struct{})}
	wait := func() {
		msg, ok := <-batch.Messages()
		if !ok {
			permit.Release()
			s.err = batch.Error()
			close(s.over)
			return
		}
		close(s.over)
		w.handle(ctx, msg, permit)
	}
	// On a goroutine of the handlers' pool, which goes on to handle the
	// job: one hand-off less before it starts. The fetch loop waits for
	// over (the pull), Stop's handlers.Close for the job.
	if !w.handlers.Go(wait) {
		wait() // the pool closed (it does only after the fetch loop returned)
	}
	return s
}

// ended reports whether the pull has ended.
func (s *standingPull) ended() bool {
	select {
	case <-s.over:
		return true
	default:
		return false
	}
}

// endedC is closed once the pull has ended; nil (never) for no pull.
func (s *standingPull) endedC() <-chan struct{} {
	if s == nil {
		return nil
	}
	return s.over
}
