package worker

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/manager"
)

// standingPull is a pull request that waits at the server for the next
// job of one queue while the worker has nothing queued to pull, holding
// one reserved request slot. A job stored meanwhile reaches the worker
// with the stream's announcement of it, not one round trip after: the
// announcement, then a pull, is the path of every other job.
//
// It takes one job at most. Stopping it drains its subscription: the
// server stops sending at once, and a job it sent just before is still
// read and handed to the manager (or back to the queue when the worker
// stops), never stranded until its ack wait. The slot goes back when it
// ends without a job.
type standingPull struct {
	queue    queue
	iter     jetstream.MessagesContext
	stopping atomic.Bool   // stop was called
	done     chan struct{} // closed once it has ended
	err      error         // why it ended without a job and without stop; read after done
}

// stand starts a standing pull on q with permit, or returns nil and gives
// the permit back when the pull cannot start.
func (w *Worker) stand(ctx context.Context, q queue, permit *manager.Permit) *standingPull {
	c, err := w.queues.consumer(ctx, q)
	if err != nil {
		permit.Release()
		return nil
	}
	iter, err := c.Messages(jetstream.PullMaxMessages(1), jetstream.StopAfter(1))
	if err != nil {
		permit.Release()
		return nil
	}
	s := &standingPull{queue: q, iter: iter, done: make(chan struct{})}
	// On a goroutine of the handlers' pool, which goes on to handle the
	// job: one hand-off less before it starts. The fetch loop waits for
	// done (the pull), Stop's handlers.Close for the job.
	started := w.handlers.Go(func() {
		msg, err := iter.Next()
		if err != nil {
			iter.Stop() // Next leaves it running on ErrNoHeartbeat
			permit.Release()
			if !s.stopping.Load() || !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				s.err = err // not stopped: not to be started there again at once
			}
			close(s.done)
			return
		}
		iter.Stop()
		close(s.done)
		w.handle(ctx, msg, permit)
	})
	if !started { // the pool closed: stopping
		iter.Stop()
		permit.Release()
		return nil
	}
	return s
}

// stop ends the pull and waits until it has: its job, if one came,
// dispatched, its slot otherwise given back. Draining asks the server;
// cut off from it, there is nobody to ask, and a job sent before the cut
// comes back after its ack wait whatever the worker does.
func (s *standingPull) stop(nc *nats.Conn) {
	s.stopping.Store(true)
	if nc.IsConnected() {
		s.iter.Drain()
	} else {
		s.iter.Stop()
	}
	<-s.done
}

// endedC is closed once the pull has ended; nil (never) for no pull.
func (s *standingPull) endedC() <-chan struct{} {
	if s == nil {
		return nil
	}
	return s.done
}

// ended reports whether the pull has ended on its own.
func (s *standingPull) ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}
