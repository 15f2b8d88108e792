package worker_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/topology"
	"github.com/chatfleet/chatfleet/worker"
)

// oneAtATime is a worker that pulls one job at a time, so the upstream
// sees the jobs in the order the worker pulled them.
func oneAtATime(c *worker.Config) {
	withModel(c)
	c.Manager.MaxConcurrentRequests = 1
	c.Manager.MaxConcurrentLLMStreams = 1
}

// queueUp submits jobs before any worker runs (the topology made first),
// so they all wait; it returns the replies.
func queueUp(t *testing.T, f *fleettest.Fleet, jobs []protocol.Job) []*publisher.Reply {
	t.Helper()
	ctx := fleettest.Context(t, 30*time.Second)
	var replies []*publisher.Reply
	for _, j := range jobs {
		r, err := f.Pub.Submit(ctx, j)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Stop)
		replies = append(replies, r)
	}
	return replies
}

func ensureTopology(t *testing.T, f *fleettest.Fleet) *topology.Topology {
	t.Helper()
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	top, err := topology.Ensure(fleettest.Context(t, 10*time.Second), js, f.Topology)
	if err != nil {
		t.Fatal(err)
	}
	return top
}

// upstreamOrder is the prompts in the order the upstream was asked.
func upstreamOrder(f *fleettest.Fleet) []string {
	var out []string
	for _, r := range f.LLM.Requests() {
		out = append(out, r.LastUserMessage())
	}
	return out
}

func collectAll(t *testing.T, replies []*publisher.Reply) {
	t.Helper()
	ctx := fleettest.Context(t, time.Minute)
	for _, r := range replies {
		if _, err := r.Collect(ctx); err != nil {
			t.Fatalf("job %s: %v", r.ID(), err)
		}
	}
}

// TestPriorityOrderUnderBacklog: 20 jobs of each priority wait, low ones
// first; a worker pulling one at a time serves six high, three normal and
// one low of every ten while all wait (high first, low still
// progressing), and every job completes.
func TestPriorityOrderUnderBacklog(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	ensureTopology(t, f)
	var jobs []protocol.Job
	for _, p := range []protocol.Priority{protocol.PriorityLow, protocol.PriorityNormal, protocol.PriorityHigh} {
		for i := range 20 {
			j := userJob(fmt.Sprintf("%s %d", p, i))
			j.Priority = p
			jobs = append(jobs, j)
		}
	}
	replies := queueUp(t, f, jobs)
	f.StartWorker(oneAtATime)
	collectAll(t, replies)

	order := upstreamOrder(f)
	if len(order) != 60 {
		t.Fatalf("upstream calls %d, want 60", len(order))
	}
	counts := map[string]int{}
	for _, p := range order[:20] {
		counts[strings.Fields(p)[0]]++
	}
	if counts["high"] != 12 || counts["normal"] != 6 || counts["low"] != 2 {
		t.Errorf("first 20 pulls %v: %v; want 12 high, 6 normal, 2 low", order[:20], counts)
	}
	if last := lastIndex(order, "high"); last > 40 {
		t.Errorf("the last high job was pulled %dth of 60, behind the backlog: %v", last+1, order)
	}
}

// TestFairShareBetweenTenants: tenant A has 300 jobs queued when tenant B
// submits 20; a worker pulling one at a time serves B's 20 alternately
// with A's, so all of B's are done long before A's backlog drains.
func TestFairShareBetweenTenants(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	ensureTopology(t, f)
	var jobs []protocol.Job
	for i := range 300 {
		j := userJob(fmt.Sprintf("A %d", i))
		j.Tenant = "a"
		jobs = append(jobs, j)
	}
	replies := queueUp(t, f, jobs)
	f.StartWorker(oneAtATime)
	ctx := fleettest.Context(t, 30*time.Second)
	if err := f.LLM.WaitCalls(ctx, 5); err != nil { // A's backlog is being worked on
		t.Fatal(err)
	}
	var bJobs []protocol.Job
	for i := range 20 {
		j := userJob(fmt.Sprintf("B %d", i))
		j.Tenant = "b"
		bJobs = append(bJobs, j)
	}
	replies = append(replies, queueUp(t, f, bJobs)...)
	collectAll(t, replies)

	order := upstreamOrder(f)
	lastB, lastA := lastIndex(order, "B"), lastIndex(order, "A")
	firstB := firstIndex(order, "B")
	if lastB < 0 || lastB > lastA {
		t.Fatalf("B's last job pulled %d, A's %d: B waited behind A's backlog", lastB, lastA)
	}
	// Alternating from B's first job on: B's 20 within the next 40 pulls,
	// give or take a pull in flight.
	if lastB-firstB > 42 {
		t.Errorf("B's jobs pulled from %d to %d of %d: not sharing the worker half and half", firstB, lastB, len(order))
	}
}

func lastIndex(order []string, word string) int {
	for i := len(order) - 1; i >= 0; i-- {
		if strings.Fields(order[i])[0] == word {
			return i
		}
	}
	return -1
}

func firstIndex(order []string, word string) int {
	for i, p := range order {
		if strings.Fields(p)[0] == word {
			return i
		}
	}
	return -1
}

// TestPriorityNeverInTheBody: the publisher sends a job's priority as its
// subject and never in its body, so a worker that knows nothing of
// priorities (which forwards unknown fields upstream) cannot send it
// upstream. On a fleet of the older layout (no priority subjects) the
// high job is stored as a normal one, without priority, for the workers
// of either version; on a migrated one it waits on its priority subject,
// and a worker serves it as high.
func TestPriorityNeverInTheBody(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	ctx := fleettest.Context(t, 30*time.Second)
	names := f.Topology.WithDefaults().Names
	if _, err := js.CreateStream(ctx, topology.LegacyJobsStream(f.Topology)); err != nil {
		t.Fatal(err)
	}
	job := userJob("urgent")
	job.Priority = protocol.PriorityHigh
	r, err := f.Pub.Submit(ctx, job)
	if err != nil {
		t.Fatalf("high job on an older fleet: %v", err)
	}
	r.Stop()
	s, _ := js.Stream(ctx, names.JobsStream())
	msg, err := s.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Subject != names.Jobs("default") || strings.Contains(string(msg.Data), "priority") {
		t.Errorf("on the older layout the job was stored on %s as %s; want %s, no priority", msg.Subject, msg.Data, names.Jobs("default"))
	}

	mig, err := topology.PlanMigration(ctx, js, f.Topology)
	if err != nil {
		t.Fatal(err)
	}
	if err := mig.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	job.ID = ""
	r, err = f.Pub.Submit(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	msg, err = s.GetLastMsgForSubject(ctx, names.PriorityJobs("default", "high"))
	if err != nil {
		t.Fatalf("the high job on the migrated fleet: %v", err)
	}
	if strings.Contains(string(msg.Data), "priority") {
		t.Errorf("body %s carries the priority", msg.Data)
	}
	f.StartWorker(withModel)
	if _, err := r.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	for _, req := range f.LLM.Requests() {
		if _, ok := req.JSON()["priority"]; ok {
			t.Errorf("upstream request carries a priority: %s", req.Body)
		}
	}
}
