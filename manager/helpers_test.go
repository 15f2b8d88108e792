package manager_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/manager"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/worker"
)

func userJob(prompt string) protocol.Job {
	return protocol.Job{Model: "m", Messages: []protocol.Message{{Role: protocol.RoleUser, Content: protocol.TextContent(prompt)}}}
}

// result is what one producer saw.
type result struct {
	meta   protocol.Event
	answer *publisher.Answer
	err    error
}

// submitted is a reply being read in the background: meta first, then the
// rest.
type submitted struct {
	reply    *publisher.Reply
	metaRead chan struct{} // closed once meta (or a failure) arrived
	done     chan struct{}
	res      result
}

// submit submits job and reads its reply in a goroutine the test owns
// (wait for done).
func submit(t *testing.T, ctx context.Context, pub *publisher.Publisher, job protocol.Job) *submitted {
	t.Helper()
	r, err := pub.Submit(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	return read(ctx, r)
}

// read reads r in a goroutine the test owns (wait for done).
func read(ctx context.Context, r *publisher.Reply) *submitted {
	s := &submitted{reply: r, metaRead: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer r.Stop()
		ev, err := r.Next(ctx)
		s.res.meta, s.res.err = ev, err
		close(s.metaRead)
		if err != nil || ev.Type.Terminal() {
			return
		}
		s.res.answer, s.res.err = r.Collect(ctx)
	}()
	return s
}

func (s *submitted) wait(t *testing.T) result {
	t.Helper()
	<-s.done
	return s.res
}

// submitMany submits n copies of job (fresh IDs) from 16 goroutines.
func submitMany(t *testing.T, ctx context.Context, pub *publisher.Publisher, job protocol.Job, n int) []*submitted {
	t.Helper()
	out := make([]*submitted, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for g := range 16 {
		wg.Go(func() {
			for i := g; i < n; i += 16 {
				r, err := pub.Submit(ctx, job)
				if err != nil {
					errs <- err
					return
				}
				out[i] = read(ctx, r)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return out
}

// statsOf sums the counters of workers.
func statsOf(ws ...*worker.Worker) manager.Stats {
	var s manager.Stats
	for _, w := range ws {
		x := w.Manager().Stats()
		s.Requests += x.Requests
		s.Leaders += x.Leaders
		s.Followers += x.Followers
		s.CacheHits += x.CacheHits
		s.UpstreamCalls += x.UpstreamCalls
		s.Takeovers += x.Takeovers
		s.LeasesLost += x.LeasesLost
		s.Cancelled += x.Cancelled
		s.Errors += x.Errors
	}
	return s
}

func ctxFor(t *testing.T, d time.Duration) context.Context { return fleettest.Context(t, d) }

func describe(r result) string {
	if r.answer == nil {
		return fmt.Sprintf("meta=%+v err=%v", r.meta, r.err)
	}
	return fmt.Sprintf("meta=%+v content=%q err=%v", r.meta, r.answer.Content, r.err)
}
