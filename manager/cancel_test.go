package manager_test

import (
	"context"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/topology"
	"github.com/chatfleet/chatfleet/worker"
)

// leaderAndFollower starts w1 (one request slot) leading a stalled
// generation for job, and w2 with a follower of it: the follower is on
// another worker, so every cancel below crosses workers.
func leaderAndFollower(t *testing.T, release chan struct{}) (f *fleettest.Fleet, job protocol.Job, leader, follower *submitted, w1, w2 *worker.Worker) {
	t.Helper()
	f = fleettest.New(t, fleettest.Options{LLM: midStream(release)})
	w1 = f.StartWorker(capacity(1))
	ctx := ctxFor(t, time.Minute)
	job = userJob("cancel me maybe")
	leader = submit(t, ctx, f.Pub, job)
	<-leader.metaRead
	if err := f.LLM.WaitCalls(ctx, 1); err != nil {
		t.Fatal(err)
	}
	w2 = f.StartWorker(capacity(1))
	follower = submit(t, ctx, f.Pub, job)
	<-follower.metaRead
	if follower.res.meta.Worker != w2.ID() || follower.res.meta.Role != protocol.RoleFollower {
		t.Fatalf("follower meta = %+v", follower.res.meta)
	}
	return f, job, leader, follower, w1, w2
}

func cancel(t *testing.T, pub *publisher.Publisher, s *submitted) {
	t.Helper()
	if err := pub.Cancel(ctxFor(t, 10*time.Second), s.reply.Tenant(), s.reply.ID()); err != nil {
		t.Fatal(err)
	}
}

func TestCancelQueued(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	if _, err := topology.Ensure(context.Background(), js, f.Topology); err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, 30*time.Second)
	queued := submit(t, ctx, f.Pub, userJob("never mind"))
	cancel(t, f.Pub, queued)
	f.StartWorker(nil) // pulls the job only now
	r := queued.wait(t)
	if r.err != nil || r.meta.Type != protocol.EventCancelled || r.meta.Seq != 1 {
		t.Fatalf("queued job: %s", describe(r))
	}
	if f.LLM.Calls() != 0 {
		t.Errorf("upstream calls = %d, want 0", f.LLM.Calls())
	}
}

// TestCancelOneOfTwo: when one of two requests sharing a generation (the
// follower, or the leader's own producer) is cancelled, the generation
// goes on for the other, uncut, and is still cached.
func TestCancelOneOfTwo(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name         string
		cancelLeader bool
	}{{"follower", false}, {"leader", true}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			release := make(chan struct{})
			f, job, leader, follower, _, _ := leaderAndFollower(t, release)
			gone, stays := follower, leader
			if tt.cancelLeader {
				gone, stays = leader, follower
			}
			cancel(t, f.Pub, gone)
			if r := gone.wait(t); r.err != publisher.ErrCancelled {
				t.Fatalf("cancelled: %s", describe(r))
			}
			close(release)
			r := stays.wait(t)
			if r.err != nil || r.answer.Content == "" || !endsWithAnswer(f, r.answer.Content) {
				t.Fatalf("the other: %s", describe(r))
			}
			later := submit(t, ctxFor(t, 30*time.Second), f.Pub, job).wait(t)
			if later.err != nil || later.meta.Role != protocol.RoleCache || later.answer.Content != r.answer.Content {
				t.Fatalf("later: %s", describe(later))
			}
			if f.LLM.Calls() != 1 || f.LLM.Disconnects() != 0 {
				t.Errorf("calls %d, disconnects %d; want 1 and 0", f.LLM.Calls(), f.LLM.Disconnects())
			}
		})
	}
}

// TestCancelEveryone: when the last interested request is cancelled the
// upstream call is cancelled, and nothing is cached.
func TestCancelEveryone(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	defer close(release)
	f, job, leader, follower, _, _ := leaderAndFollower(t, release)
	cancel(t, f.Pub, leader)
	if r := leader.wait(t); r.err != publisher.ErrCancelled {
		t.Fatalf("leader: %s", describe(r))
	}
	if f.LLM.Disconnects() != 0 {
		t.Fatalf("upstream cancelled while a follower still waits")
	}
	cancel(t, f.Pub, follower)
	if r := follower.wait(t); r.err != publisher.ErrCancelled {
		t.Fatalf("follower: %s", describe(r))
	}
	ctx := ctxFor(t, 30*time.Second)
	if err := f.LLM.WaitDisconnects(ctx, 1); err != nil {
		t.Fatalf("the upstream call was not cancelled: %v", err)
	}
	again := submit(t, ctx, f.Pub, job).wait(t)
	if again.err != nil || again.meta.Role != protocol.RoleLeader || f.LLM.Calls() != 2 {
		t.Fatalf("a cancelled generation must not be cached: %s, calls %d", describe(again), f.LLM.Calls())
	}
}

// TestCancelLoneLeader: a request alone in its generation cancels the
// upstream call.
func TestCancelLoneLeader(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	defer close(release)
	f := fleettest.New(t, fleettest.Options{LLM: midStream(release)})
	f.StartWorker(nil)
	ctx := ctxFor(t, 30*time.Second)
	s := submit(t, ctx, f.Pub, userJob("alone"))
	if err := f.LLM.WaitCalls(ctx, 1); err != nil {
		t.Fatal(err)
	}
	cancel(t, f.Pub, s)
	if r := s.wait(t); r.err != publisher.ErrCancelled {
		t.Fatalf("%s", describe(r))
	}
	if err := f.LLM.WaitDisconnects(ctx, 1); err != nil {
		t.Fatal(err)
	}
}

func endsWithAnswer(f *fleettest.Fleet, content string) bool {
	return content == llmtest.Answer(f.LLM.Requests()[0])
}
