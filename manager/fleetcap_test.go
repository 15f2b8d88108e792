package manager_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/topology"
	"github.com/chatfleet/chatfleet/worker"
)

// setUpstream writes the upstream's limits in the upstreams bucket, as
// `chatfleet upstream limits set` does.
func setUpstream(t *testing.T, ctx context.Context, f *fleettest.Fleet, limits protocol.UpstreamLimits) {
	t.Helper()
	top := jobs(t, f)
	limits.V = protocol.UpstreamVersion
	b, err := json.Marshal(limits)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := top.Upstreams.Put(ctx, protocol.DefaultUpstream, b); err != nil {
		t.Fatal(err)
	}
}

// TestFleetStreamCapAcrossFleet: four worker processes, each allowed 16
// upstream streams, a fleet-wide cap of 3 (CHATFLEET_FLEET_MAX_LLM_STREAMS):
// the upstream never sees more than 3 streams at once, the jobs beyond
// them say they wait (progress, fleet_streams), a cache hit is served
// meanwhile though the waiting jobs outnumber the fleet's request slots,
// and every job completes.
func TestFleetStreamCapAcrossFleet(t *testing.T) {
	t.Parallel()
	stall, release := stallTenants("A")
	defer release()
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{stall}})
	ctx := ctxFor(t, time.Minute)
	jobs(t, f)
	for i := range 4 { // 8 request slots in all
		startChildWorker(t, f, fmt.Sprintf("cap%d", i), "CHATFLEET_FLEET_MAX_LLM_STREAMS=3", "CHATFLEET_MAX_CONCURRENT_REQUESTS=2")
	}
	cached := tenantJob("C", 0)
	if _, err := f.Pub.Complete(ctx, cached); err != nil {
		t.Fatal(err)
	}
	var as []*eventLog
	for i := range 12 {
		as = append(as, submitEvents(t, ctx, f.Pub, tenantJob("A", i)))
	}
	waited := countWaiting(t, ctx, as, protocol.ReasonFleetStreams)
	if waited < 9 || f.LLM.Active(ofTenant("A")) != 3 {
		t.Errorf("%d jobs wait for the fleet's streams, %d at the upstream; want 9 and 3", waited, f.LLM.Active(ofTenant("A")))
	}
	// A cache hit while nine wait, more than the fleet's free request slots.
	hit := submitEvents(t, ctx, f.Pub, cached)
	if end := hit.end(t); end.Type != protocol.EventDone || !end.Cached {
		t.Errorf("the cache hit while jobs wait for the fleet: %v", describeEvents(hit.sofar()))
	}
	release()
	wantAllDone(t, "job", as...)
	if got := f.LLM.MaxConcurrent(ofTenant("A")); got != 3 {
		t.Errorf("streams at once at the upstream: at most %d, want 3 (the fleet's cap, reached)", got)
	}
}

// TestFleetStreamCapFromBucket: the upstreams bucket's limit wins over the
// workers' environment, and a change applies live: raised from 1 to 2
// while jobs wait, a second stream starts.
func TestFleetStreamCapFromBucket(t *testing.T) {
	t.Parallel()
	stall, release := stallTenants("B")
	defer release()
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{stall}})
	ctx := ctxFor(t, time.Minute)
	setUpstream(t, ctx, f, protocol.UpstreamLimits{MaxStreams: 1})
	f.StartWorker(func(c *worker.Config) { c.Manager.FleetLimits.MaxStreams = 5 })
	f.StartWorker(func(c *worker.Config) { c.Manager.FleetLimits.MaxStreams = 5 })
	var bs []*eventLog
	for i := range 4 {
		bs = append(bs, submitEvents(t, ctx, f.Pub, tenantJob("B", i)))
	}
	if err := f.LLM.WaitActive(ctx, ofTenant("B"), 1); err != nil {
		t.Fatal(err)
	}
	waiting := countWaiting(t, ctx, bs, protocol.ReasonFleetStreams)
	if waiting != 3 || f.LLM.Active(ofTenant("B")) != 1 {
		t.Errorf("%d wait, %d at the upstream; want 3 and 1 (the bucket's limit, not the environment's 5)", waiting, f.LLM.Active(ofTenant("B")))
	}
	setUpstream(t, ctx, f, protocol.UpstreamLimits{MaxStreams: 2})
	if err := f.LLM.WaitActive(ctx, ofTenant("B"), 2); err != nil {
		t.Fatalf("after raising the limit to 2: %v", err)
	}
	release()
	wantAllDone(t, "job", bs...)
	if got := f.LLM.MaxConcurrent(ofTenant("B")); got != 2 {
		t.Errorf("streams at once: at most %d, want 2", got)
	}
}

// TestFleetStreamShareOfDeadWorker: a worker process holding the fleet's
// only stream share is killed (SIGKILL); the share comes back within the
// lease TTL and a job waiting for it on another worker runs.
func TestFleetStreamShareOfDeadWorker(t *testing.T) {
	t.Parallel()
	testShareOfDeadWorker(t, protocol.ReasonFleetStreams, func(ctx context.Context, f *fleettest.Fleet) {
		setUpstream(t, ctx, f, protocol.UpstreamLimits{MaxStreams: 1})
	})
}

// callLog records when the upstream received each call, by prompt.
type callLog struct {
	mu    sync.Mutex
	times map[string][]time.Time
}

func (c *callLog) note(r llmtest.Request) time.Time {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.times == nil {
		c.times = map[string][]time.Time{}
	}
	c.times[r.LastUserMessage()] = append(c.times[r.LastUserMessage()], now)
	return now
}

func (c *callLog) all() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Time
	for _, ts := range c.times {
		out = append(out, ts...)
	}
	return out
}

// TestFleetBacksOffOn429: four worker processes; the upstream answers one
// call 429 with Retry-After 2s. Every worker holds its new calls back
// until then — each one's jobs say so (progress, upstream_backoff) and the
// upstream receives no call before the two seconds have passed — and every
// job completes afterwards.
func TestFleetBacksOffOn429(t *testing.T) {
	t.Parallel()
	calls := &callLog{}
	var limitedAt time.Time
	var once sync.Once
	script := llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		now := calls.note(r)
		limited := false
		once.Do(func() { limitedAt, limited = now, true })
		if limited {
			return llmtest.Reply{Status: 429, RetryAfter: 2 * time.Second}
		}
		return llmtest.DefaultReply(r)
	})
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{script}})
	ctx := ctxFor(t, time.Minute)
	for i := range 4 {
		startChildWorker(t, f, fmt.Sprintf("bo%d", i), "CHATFLEET_MAX_CONCURRENT_REQUESTS=1", "CHATFLEET_MAX_PARKED_JOBS=0")
	}
	first := submitEvents(t, ctx, f.Pub, userJob("R-first"))
	// The 429's backoff is in the bucket, for every worker; then a job
	// for each worker (each takes one at a time).
	top := jobs(t, f)
	fleettest.Poll(t, ctx, "the fleet's backoff stored", func() bool {
		_, err := top.Upstreams.Get(ctx, protocol.DefaultUpstream+".backoff")
		return err == nil
	})
	var rs []*eventLog
	for i := range 6 {
		rs = append(rs, submitEvents(t, ctx, f.Pub, userJob(fmt.Sprintf("R-%d", i))))
	}
	backedOff := map[string]bool{}
	for _, r := range append(rs, first) {
		if end := r.end(t); end.Type != protocol.EventDone {
			t.Errorf("job ended %v", describeEvents(r.sofar()))
		}
		evs := r.sofar()
		if count(evs, progressOf(protocol.StageWaiting, protocol.ReasonUpstreamBackoff)) > 0 {
			backedOff[workerOf(evs)] = true
		}
	}
	t.Logf("workers whose jobs waited for the fleet's backoff: %v", backedOff)
	if len(backedOff) < 3 {
		t.Errorf("jobs waited for the backoff on %d workers, want every worker that ran a job after the 429 (3 or 4)", len(backedOff))
	}
	for _, at := range calls.all() {
		if at.After(limitedAt) && at.Before(limitedAt.Add(2*time.Second)) {
			t.Errorf("an upstream call %s after the 429, within its Retry-After of 2s", at.Sub(limitedAt).Round(time.Millisecond))
		}
	}
}

// workerOf is the worker that accepted a request: its meta event's.
func workerOf(evs []protocol.Event) string {
	for _, ev := range evs {
		if ev.Type == protocol.EventMeta {
			return ev.Worker
		}
	}
	return ""
}

// freshMinute waits, when the current UTC minute ends within margin, for
// the next one: a test of a minute's limit then starts with room in it.
func freshMinute(ctx context.Context, margin time.Duration) {
	next := protocol.NextMinute(time.Now())
	if time.Until(next) > margin {
		return
	}
	t := time.NewTimer(time.Until(next))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// minuteFleet starts two worker processes (named after name) under limits,
// an upstream that logs its calls, and waits for a fresh minute.
func minuteFleet(t *testing.T, name string, limits protocol.UpstreamLimits) (*fleettest.Fleet, *callLog, context.Context) {
	calls := &callLog{}
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		calls.note(r)
		return llmtest.DefaultReply(r)
	})}})
	ctx := ctxFor(t, 3*time.Minute)
	setUpstream(t, ctx, f, limits)
	for i := range 2 {
		startChildWorker(t, f, fmt.Sprintf("%s%d", name, i))
	}
	freshMinute(ctx, 15*time.Second)
	return f, calls, ctx
}

// TestFleetRequestsPerMinute: two worker processes and a fleet-wide limit
// of 3 upstream calls a minute: five jobs all complete, no UTC minute sees
// more than 3 calls, and the jobs beyond them say they wait (fleet_rpm).
// It waits for the next minute: skipped with -short.
func TestFleetRequestsPerMinute(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the next minute")
	}
	t.Parallel()
	f, calls, ctx := minuteFleet(t, "rpm", protocol.UpstreamLimits{RequestsPerMinute: 3})
	var rs []*eventLog
	for i := range 5 {
		rs = append(rs, submitEvents(t, ctx, f.Pub, userJob(fmt.Sprintf("rpm-%d", i))))
	}
	waited := 0
	for i, r := range rs {
		if end := r.end(t); end.Type != protocol.EventDone {
			t.Errorf("job %d: %v", i, describeEvents(r.sofar()))
		}
		if count(r.sofar(), progressOf(protocol.StageWaiting, protocol.ReasonFleetRPM)) > 0 {
			waited++
		}
	}
	perMinute := map[time.Time]int{}
	for _, at := range calls.all() {
		perMinute[at.UTC().Truncate(time.Minute)]++
	}
	t.Logf("upstream calls by minute: %v; %d jobs waited for the next minute", perMinute, waited)
	for m, n := range perMinute {
		if n > 3 {
			t.Errorf("%d upstream calls in the minute from %s, over the fleet's 3", n, m.Format(time.TimeOnly))
		}
	}
	if waited < 2 {
		t.Errorf("%d jobs said they waited for the fleet's requests per minute, want 2", waited)
	}
}

// TestFleetTokensPerMinute: two worker processes and a fleet-wide limit
// of 1 token a minute: the first generation uses it up, and the jobs after
// it wait for the next minute (fleet_tpm) on whichever worker pulls them,
// then complete. Skipped with -short.
func TestFleetTokensPerMinute(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the next minute")
	}
	t.Parallel()
	f, calls, ctx := minuteFleet(t, "tpm", protocol.UpstreamLimits{TokensPerMinute: 1})
	if _, err := f.Pub.Complete(ctx, userJob("tpm-first")); err != nil {
		t.Fatal(err)
	}
	firstMinute := time.Now().UTC().Truncate(time.Minute)
	var rs []*eventLog
	for i := range 4 {
		rs = append(rs, submitEvents(t, ctx, f.Pub, userJob(fmt.Sprintf("tpm-%d", i))))
	}
	for i, r := range rs {
		if end := r.end(t); end.Type != protocol.EventDone {
			t.Errorf("job %d: %v", i, describeEvents(r.sofar()))
		}
		if count(r.sofar(), progressOf(protocol.StageWaiting, protocol.ReasonFleetTPM)) == 0 {
			t.Errorf("job %d did not say it waited for the fleet's tokens: %v", i, describeEvents(r.sofar()))
		}
	}
	calls.mu.Lock()
	defer calls.mu.Unlock()
	for i := range 4 {
		for _, at := range calls.times[fmt.Sprintf("tpm-%d", i)] {
			if !at.UTC().Truncate(time.Minute).After(firstMinute) {
				t.Errorf("job %d called the upstream in the minute whose tokens were used up", i)
			}
		}
	}
}

// TestFleetWaitKeepsTheJobAlive: a job that waits for the fleet's one
// stream for three ack waits is not redelivered (it reports progress to
// JetStream meanwhile), and is answered once the stream is free: one
// meta, one upstream call for it.
func TestFleetWaitKeepsTheJobAlive(t *testing.T) {
	t.Parallel()
	stall, release := stallTenants("H")
	defer release()
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{stall}, Topology: topology.Config{AckWait: time.Second}})
	ctx := ctxFor(t, time.Minute)
	f.StartWorker(func(c *worker.Config) { c.Manager.FleetLimits.MaxStreams = 1 })
	f.StartWorker(func(c *worker.Config) { c.Manager.FleetLimits.MaxStreams = 1 })
	first := submitEvents(t, ctx, f.Pub, tenantJob("H", 1))
	if err := f.LLM.WaitActive(ctx, ofTenant("H"), 1); err != nil {
		t.Fatal(err)
	}
	second := submitEvents(t, ctx, f.Pub, tenantJob("H", 2))
	second.waitEvent(t, ctx, progressOf(protocol.StageWaiting, protocol.ReasonFleetStreams))
	waitFor := time.NewTimer(3 * time.Second) // three ack waits
	select {
	case <-waitFor.C:
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	info, err := f.ConsumerInfo(ctx)
	if err != nil || info.NumRedelivered != 0 || info.NumAckPending != 2 {
		t.Errorf("consumer after three ack waits: %d redelivered, %d pending (%v); want 0 and 2", info.NumRedelivered, info.NumAckPending, err)
	}
	release()
	wantAllDone(t, "job", first, second)
	if n := count(second.sofar(), func(ev protocol.Event) bool { return ev.Type == protocol.EventMeta }); n != 1 || f.LLM.Calls() != 2 {
		t.Errorf("the waiting job: %d meta events, %d upstream calls in all; want 1 and 2 (never redelivered): %v",
			n, f.LLM.Calls(), describeEvents(second.sofar()))
	}
}

// TestFleetCapacityByPriorityAcrossWorkers: the fleet's one stream is
// busy on one worker, where a high-priority job waits for it; a
// low-priority job waits on another, idle worker. When the stream is
// freed, the high-priority job gets it, though the idle worker would be
// quicker to take it: each worker advertises its best waiting priority.
func TestFleetCapacityByPriorityAcrossWorkers(t *testing.T) {
	t.Parallel()
	stall, release := stallTenants("P")
	defer release()
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{stall}})
	ctx := ctxFor(t, time.Minute)
	setUpstream(t, ctx, f, protocol.UpstreamLimits{MaxStreams: 1})
	// Two request slots and no parking: the first worker holds the stream's
	// job and the high-priority one, and pulls nothing more.
	f.StartWorker(func(c *worker.Config) { c.Manager.MaxConcurrentRequests, c.Manager.MaxParkedJobs = 2, -1 })
	busy := submitEvents(t, ctx, f.Pub, tenantJob("P", 0))
	if err := f.LLM.WaitActive(ctx, ofTenant("P"), 1); err != nil {
		t.Fatal(err)
	}
	high := tenantJob("H", 1)
	high.Priority = protocol.PriorityHigh
	highLog := submitEvents(t, ctx, f.Pub, high)
	highLog.waitEvent(t, ctx, progressOf(protocol.StageWaiting, protocol.ReasonFleetStreams))
	f.StartWorker(nil)
	low := tenantJob("L", 2)
	low.Priority = protocol.PriorityLow
	lowLog := submitEvents(t, ctx, f.Pub, low)
	lowLog.waitEvent(t, ctx, progressOf(protocol.StageWaiting, protocol.ReasonFleetStreams))
	if w1, w2 := workerOf(highLog.sofar()), workerOf(lowLog.sofar()); w1 == w2 {
		t.Fatalf("both jobs on worker %s; the test needs two", w1)
	}
	release() // P-0 ends: its share is free
	wantAllDone(t, "job", busy, highLog, lowLog)
	reqs := f.LLM.Requests()
	if len(reqs) != 3 || reqs[1].LastUserMessage() != "H-1" {
		var order []string
		for _, r := range reqs {
			order = append(order, r.LastUserMessage())
		}
		t.Errorf("upstream calls in order %v; want the high-priority H-1 second", order)
	}
}
