package worker_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/worker"
)

// neverRescans is a worker that reads the jobs stream's queues at start
// only: it learns of later jobs from announcements or its standing pull.
func neverRescans(c *worker.Config) {
	withModel(c)
	c.FetchWait = time.Hour
}

// submitAndCollect submits j and reads its reply to the end.
func submitAndCollect(t *testing.T, f *fleettest.Fleet, j protocol.Job) *publisher.Reply {
	t.Helper()
	ctx := fleettest.Context(t, 20*time.Second)
	r, err := f.Pub.Submit(ctx, j)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	if _, err := r.Collect(ctx); err != nil {
		t.Fatalf("job %s: %v", r.ID(), err)
	}
	return r
}

// waitStanding waits until a pull request waits on the fleet's queues: an
// idle worker's standing pull.
func waitStanding(t *testing.T, f *fleettest.Fleet) {
	t.Helper()
	f.WaitConsumer(t, fleettest.Context(t, 10*time.Second), "a standing pull", func(ci *jetstream.ConsumerInfo) bool { return ci.NumWaiting > 0 })
}

// TestIdleWorkerTakesJobsWithoutAnnouncement: once a worker has pulled
// from a queue, its next job there reaches it through its standing pull,
// even when the stream announces nothing (announcements removed here) and
// the worker never reads the stream's queues again.
func TestIdleWorkerTakesJobsWithoutAnnouncement(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	f.StartWorker(neverRescans)
	submitAndCollect(t, f, userJob("first"))
	waitStanding(t, f)

	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	ctx := fleettest.Context(t, 10*time.Second)
	s, err := js.Stream(ctx, f.Topology.WithDefaults().Names.JobsStream())
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.RePublish = nil
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	submitAndCollect(t, f, userJob("second, not announced"))
}

// TestStandingPullYieldsItsSlot: a worker with one request slot, holding
// it in a standing pull on tenant a's queue, still serves tenant b's job:
// the standing pull gives its slot back.
func TestStandingPullYieldsItsSlot(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	f.StartWorker(func(c *worker.Config) {
		neverRescans(c)
		c.Manager.MaxConcurrentRequests = 1
	})
	a := userJob("for a")
	a.Tenant = "a"
	submitAndCollect(t, f, a)
	waitStanding(t, f)
	b := userJob("for b")
	b.Tenant = "b"
	submitAndCollect(t, f, b)
	submitAndCollect(t, f, a) // and a again, after b's
}

// TestStopEndsStandingPull: a stopped worker leaves no pull waiting for
// jobs: a job submitted after its stop is delivered once, to the next
// worker, not to the stopped one (where it would wait for its ack wait).
func TestStopEndsStandingPull(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	w := f.StartWorker(neverRescans)
	submitAndCollect(t, f, userJob("first"))
	waitStanding(t, f)
	fleettest.StopWorker(t, w)

	ctx := fleettest.Context(t, 20*time.Second)
	r, err := f.Pub.Submit(ctx, userJob("after the stop"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	f.StartWorker(withModel)
	if _, err := r.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := f.ConsumerInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumRedelivered != 0 {
		t.Errorf("jobs redelivered: %d, want none (the second job went to the stopped worker first)", info.NumRedelivered)
	}
}
