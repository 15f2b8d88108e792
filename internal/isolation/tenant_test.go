package isolation_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
)

// TestSharedFleet runs one fleet shared by tenants A and B, every process
// with the identity `chatfleet auth` generated for it: everything A may
// do works end to end, and everything B tries against A is refused.
func TestSharedFleet(t *testing.T) {
	f := newFleet(t)
	t.Run("tenant", func(t *testing.T) { tenantWorks(t, f) })
	t.Run("attacks", func(t *testing.T) { attacksRefused(t, f) })
	t.Run("operators", func(t *testing.T) { operatorsWork(t, f) })
	t.Run("gateway", func(t *testing.T) { gatewayWorks(t, f) })
	t.Run("tools", func(t *testing.T) { toolsWork(t, f) })
}

// step is one subtest of the shared fleet.
type step struct {
	name string
	run  func(*testing.T, *fleet)
}

// runSteps runs steps in order on f, each as a subtest.
func runSteps(t *testing.T, f *fleet, steps []step) {
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) { s.run(t, f) })
	}
}

func tenantWorks(t *testing.T, f *fleet) {
	runSteps(t, f, []step{
		{"submit and stream", submitAndStream},
		{"a high-priority job on its own priority subject", highPriorityOwn},
		{"last event and attach from the stream", attachFromStream},
		{"a resubmitted request is read from the stream", resubmitReadsStream},
		{"dedupe and cache", dedupeAndCache},
		{"the same request ID in two tenants", sameIDTwoTenants},
		{"cancel", cancelOwn},
		{"a consumer lost while reading is recreated", consumerRecreated},
		{"the queued cap", queuedCapRefuses},
	})
}

// queuedCapRefuses: B's jobs beyond the per-tenant cap are refused by the
// jobs stream with quota_exceeded, through B's own account; A still
// submits.
func queuedCapRefuses(t *testing.T, f *fleet) {
	ctx := fleettest.Context(t, 20*time.Second)
	var err error
	held := 0
	for ; held <= queuedCap; held++ { // the cap's worth, or fewer if an earlier job is still acknowledged late
		prompt := fmt.Sprintf("hold:%s:capped-%d", tenantB, held)
		t.Cleanup(func() { f.gates.open(prompt) })
		var r *publisher.Reply
		if r, err = f.pubB.Submit(ctx, job(tenantB, fmt.Sprintf("b-capped-%d", held), prompt)); err != nil {
			break
		}
		t.Cleanup(r.Stop)
	}
	var jerr *publisher.JobError
	if !errors.As(err, &jerr) || jerr.Code() != protocol.CodeQuotaExceeded || jerr.Err.Limit != protocol.LimitMaxQueued || held > queuedCap {
		t.Fatalf("B's job %d: %v, want quota_exceeded (max_queued) by the %dth", held+1, err, queuedCap+1)
	}
	if _, err := f.pubA.Complete(ctx, job(tenantA, "a-beside-capped", "A beside B's cap")); err != nil {
		t.Fatalf("A at B's cap: %v", err)
	}
}

func submitAndStream(t *testing.T, f *fleet) {
	ans, err := f.pubA.Complete(fleettest.Context(t, 20*time.Second), job(tenantA, "a-1", "hello from acme"))
	if err != nil || ans.FinishReason != "stop" || ans.Content == "" {
		t.Fatalf("Complete = %+v, %v; want an answer", ans, err)
	}
}

// highPriorityOwn: A's account imports its priority subjects: a job
// published there is stored (the stream's ack comes back) and answered.
// Without the import the publisher would fall back to the normal subject
// unnoticed, so the ack is checked on a connection of A's own.
func highPriorityOwn(t *testing.T, f *fleet) {
	ctx := fleettest.Context(t, 20*time.Second)
	js, err := jetstream.New(f.connect(t, "tenant-"+tenantA))
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(job(tenantA, "a-high-raw", "raw high from acme"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, f.names.PriorityJobs(tenantA, "high"), data); err != nil {
		t.Fatalf("A publishing on its high-priority subject: %v", err)
	}
	high := job(tenantA, "a-high", "high from acme")
	high.Priority = protocol.PriorityHigh
	if ans, err := f.pubA.Complete(ctx, high); err != nil || ans.FinishReason != "stop" {
		t.Fatalf("A's high-priority job: %+v, %v", ans, err)
	}
}

func attachFromStream(t *testing.T, f *fleet) {
	ctx := fleettest.Context(t, 20*time.Second)
	ev, found, err := f.pubA.LastEvent(ctx, tenantA, "a-1")
	if err != nil || !found || ev.Type != protocol.EventDone {
		t.Fatalf("LastEvent = %v %v %v, want the stored done event", ev.Type, found, err)
	}
	r, err := f.pubA.Attach(ctx, tenantA, "a-1")
	if err != nil {
		t.Fatal(err)
	}
	ans, err := r.Collect(ctx)
	if err != nil || ans.FinishReason != "stop" {
		t.Fatalf("attached reply = %+v, %v", ans, err)
	}
}

func resubmitReadsStream(t *testing.T, f *fleet) {
	r, err := f.pubA.Submit(fleettest.Context(t, 20*time.Second), job(tenantA, "a-1", "hello from acme"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	if ev := next(t, r); ev.Seq != 1 || ev.Type != protocol.EventMeta {
		t.Fatalf("first event = %+v, want the stored meta event", ev)
	}
}

// dedupeAndCache: two identical requests of A share one upstream call, a
// third is served from the cache; the same request from B is never
// served A's answer, from the cache or a shared generation.
func dedupeAndCache(t *testing.T, f *fleet) {
	ctx := fleettest.Context(t, 30*time.Second)
	const prompt = "hold:acme:shared"
	rs := make([]*publisher.Reply, 2)
	for i := range rs {
		r, err := f.pubA.Submit(ctx, job(tenantA, fmt.Sprintf("a-dedupe-%d", i), prompt))
		if err != nil {
			t.Fatal(err)
		}
		rs[i] = r
	}
	// Both have joined one generation once each has a meta event.
	for _, r := range rs {
		untilType(t, r, protocol.EventMeta)
	}
	f.gates.open(prompt)
	answers, errs := make([]*publisher.Answer, 2), make([]error, 2)
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Add(1)
		go func() { // joined below
			defer wg.Done()
			defer r.Stop()
			answers[i], errs[i] = r.Collect(ctx)
		}()
	}
	wg.Wait()
	for i := range rs {
		if errs[i] != nil || answers[i].FinishReason != "stop" {
			t.Fatalf("request %d: %+v, %v", i, answers[i], errs[i])
		}
	}
	if n := f.llm.CallsFor(prompt); n != 1 {
		t.Fatalf("upstream calls for two identical requests = %d, want 1", n)
	}
	cached, err := f.pubA.Complete(ctx, job(tenantA, "a-cached", prompt))
	if err != nil || !cached.Cached || cached.Content != answers[0].Content {
		t.Fatalf("third request = %+v, %v; want the cached answer", cached, err)
	}
	other, err := f.pubB.Complete(ctx, job(tenantB, "b-same", prompt))
	if err != nil || other.Cached || other.Role != protocol.RoleLeader {
		t.Fatalf("B's identical request = %+v, %v; want its own answer", other, err)
	}
	if n := f.llm.CallsFor(prompt); n != 2 {
		t.Errorf("upstream calls after A's cache hit and B's identical request = %d, want 2", n)
	}
}

// sameIDTwoTenants: the jobs stream's duplicate window spans every
// tenant; each job's message ID names its tenant, so neither shadows the
// other.
func sameIDTwoTenants(t *testing.T, f *fleet) {
	ctx := fleettest.Context(t, 20*time.Second)
	for _, p := range []struct {
		pub    *publisher.Publisher
		tenant string
	}{{f.pubB, tenantB}, {f.pubA, tenantA}} {
		ans, err := p.pub.Complete(ctx, job(p.tenant, "same-id", "which tenant am I, "+p.tenant))
		if err != nil || ans.FinishReason != "stop" {
			t.Fatalf("tenant %s: %+v, %v", p.tenant, ans, err)
		}
	}
}

func cancelOwn(t *testing.T, f *fleet) {
	ctx := fleettest.Context(t, 20*time.Second)
	r, _ := f.held(t, f.pubA, tenantA, "a-cancel")
	untilType(t, r, protocol.EventChunk)
	if err := f.pubA.Cancel(ctx, tenantA, "a-cancel"); err != nil {
		t.Fatalf("cancel own request: %v", err)
	}
	if _, err := r.Collect(ctx); !errors.Is(err, publisher.ErrCancelled) {
		t.Fatalf("reply = %v, want cancelled", err)
	}
	if err := f.pubA.Cancel(ctx, tenantA, "a-cancel"); !errors.Is(err, publisher.ErrAlreadyFinished) {
		t.Errorf("cancel again = %v, want ErrAlreadyFinished", err)
	}
}

// consumerRecreated: the ordered consumer Attach reads with goes away
// (deleted, as a restarted server may lose it): it is created again with
// the tenant's rights.
func consumerRecreated(t *testing.T, f *fleet) {
	_, prompt := f.held(t, f.pubA, tenantA, "a-reset")
	r, err := f.pubA.Attach(fleettest.Context(t, 20*time.Second), tenantA, "a-reset")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	untilType(t, r, protocol.EventChunk)
	if deleted := f.deleteConsumersOf(t, f.names.ReplyWrite(tenantA, "a-reset")); deleted == 0 {
		t.Fatal("found no consumer of the reply to delete")
	}
	f.gates.open(prompt)
	if ev := untilType(t, r, protocol.EventDone); ev.FinishReason != "stop" {
		t.Fatalf("done = %+v", ev)
	}
}

// deleteConsumersOf deletes, as the operators, every consumer of the
// replies stream filtered to subject; it returns how many.
func (f *fleet) deleteConsumersOf(t *testing.T, subject string) int {
	t.Helper()
	ctx := fleettest.Context(t, 10*time.Second)
	n := 0
	infos := f.top.Replies.ListConsumers(ctx)
	var names []string
	for ci := range infos.Info() {
		if ci.Config.FilterSubject == subject {
			names = append(names, ci.Name)
		}
	}
	if err := infos.Err(); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if err := f.top.Replies.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			t.Fatal(err)
		}
		n++
	}
	return n
}

// operatorsWork: the operators' identity does what operating a fleet
// needs: cancel any tenant's request, purge the cache, keep tenants'
// settings in a bucket of the fleet.
func operatorsWork(t *testing.T, f *fleet) {
	runSteps(t, f, []step{
		{"cancel any tenant's request", opsCancel},
		{"purge the cache", opsPurgeCache},
		{"the tenants bucket", opsTenantsBucket},
		{"a tenant's in-flight limit, set with chatfleet tenant", opsTenantLimit},
		{"a tenant paused and resumed with chatfleet tenant", opsTenantPause},
		{"every request of a tenant cancelled with chatfleet tenant", opsTenantCancel},
		{"no reply events, live or stored", opsNoReplyEvents},
	})
}

// opsNoReplyEvents: the operators may not write a reply's events, neither
// where the stream stores them nor on the reply subject, where a reader
// takes a live event as its worker's.
func opsNoReplyEvents(t *testing.T, f *fleet) {
	for _, subject := range []string{f.names.ReplyWrite(tenantA, "ops-1"), f.names.Reply(tenantA, "ops-1")} {
		errs := make(errorsOf, 8)
		nc := f.connect(t, "operators", errs.handler())
		if err := nc.Publish(subject, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		if refusal := errs.refusal(t); !isPermissionViolation(refusal) {
			t.Fatalf("publishing on %s: the server answered %v, want a permissions violation", subject, refusal)
		}
	}
}

// opsTenantCancel: `chatfleet tenant cancel` as the operators ends B's
// running request.
func opsTenantCancel(t *testing.T, f *fleet) {
	r, _ := f.held(t, f.pubB, tenantB, "b-all-cancelled")
	untilType(t, r, protocol.EventChunk)
	f.cli(t, "operators", "tenant", "cancel", tenantB)
	if _, err := r.Collect(fleettest.Context(t, 20*time.Second)); !errors.Is(err, publisher.ErrCancelled) {
		t.Fatalf("B's request: %v, want cancelled", err)
	}
}

// opsTenantLimit: `chatfleet tenant set` as the operators limits B to one
// generation, rejecting the rest: B's second request gets quota_exceeded
// through its own account while its first generates.
func opsTenantLimit(t *testing.T, f *fleet) {
	ctx := fleettest.Context(t, 20*time.Second)
	f.cli(t, "operators", "tenant", "set", tenantB, "--max-inflight", "1", "--on-limit", "reject")
	t.Cleanup(func() { f.cli(t, "operators", "tenant", "rm", tenantB) })
	first, _ := f.held(t, f.pubB, tenantB, "b-limited-1")
	untilType(t, first, protocol.EventChunk)
	// The workers apply the bucket's change as it reaches them: until
	// then a second request is served, so try until one is refused.
	for i := 0; ; i++ {
		_, err := f.pubB.Complete(ctx, job(tenantB, fmt.Sprintf("b-limited-try-%d", i), fmt.Sprintf("second %d", i)))
		var jerr *publisher.JobError
		if errors.As(err, &jerr) && jerr.Code() == protocol.CodeQuotaExceeded {
			if jerr.Err.Limit != protocol.LimitMaxInflight || jerr.Err.RetryAfterMS <= 0 {
				t.Errorf("refused with %+v, want max_inflight and a retry_after_ms", jerr.Err)
			}
			break
		}
		if err != nil {
			t.Fatalf("B's second request: %v", err)
		}
	}
	// show reads the bucket, the jobs stream, the shares and every
	// worker's status: all of it allowed to the operators.
	if out := f.cli(t, "operators", "tenant", "show", tenantB); !strings.Contains(out, "usage    on 2 workers") ||
		!strings.Contains(out, "(1 quota_exceeded)") {
		t.Errorf("tenant show:\n%s", out)
	}
}

// opsTenantPause: `chatfleet tenant pause` parks B's jobs (they say so on
// B's reply); `resume` serves them.
func opsTenantPause(t *testing.T, f *fleet) {
	ctx := fleettest.Context(t, 20*time.Second)
	f.cli(t, "operators", "tenant", "pause", tenantB)
	t.Cleanup(func() { f.cli(t, "operators", "tenant", "rm", tenantB) })
	var parked *publisher.Reply
	for i := 0; parked == nil; i++ { // until the workers have the pause
		r, err := f.pubB.Submit(ctx, job(tenantB, fmt.Sprintf("b-paused-%d", i), fmt.Sprintf("paused %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Stop)
		if ev := next(t, r); ev.Type == protocol.EventProgress && ev.Reason == protocol.ReasonTenantPaused {
			parked = r
		} else if _, err := r.Collect(ctx); err != nil {
			t.Fatalf("a request served before the pause: %v", err)
		}
	}
	f.cli(t, "operators", "tenant", "resume", tenantB)
	if ans, err := parked.Collect(ctx); err != nil || ans.FinishReason != "stop" {
		t.Fatalf("the parked request after resume: %+v, %v", ans, err)
	}
}

func opsCancel(t *testing.T, f *fleet) {
	ctx := fleettest.Context(t, 20*time.Second)
	r, _ := f.held(t, f.pubB, tenantB, "b-by-ops")
	untilType(t, r, protocol.EventChunk)
	if err := f.opsPub.Cancel(ctx, tenantB, "b-by-ops"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Collect(ctx); !errors.Is(err, publisher.ErrCancelled) {
		t.Fatalf("reply = %v, want cancelled", err)
	}
}

func opsPurgeCache(t *testing.T, f *fleet) {
	ctx := fleettest.Context(t, 20*time.Second)
	out := f.cli(t, "operators", "cache", "purge", "--tenant", tenantA)
	if strings.HasPrefix(out, "purged 0 ") || !strings.HasPrefix(out, "purged ") {
		t.Fatalf("cache purge --tenant %s: %q, want A's cached answers purged", tenantA, out)
	}
	keys, err := f.top.Cache.ListKeysFiltered(ctx, tenantA+".>")
	if err != nil {
		t.Fatal(err)
	}
	for k := range keys.Keys() {
		t.Errorf("A's cached answer %s is still there", k)
	}
}

func opsTenantsBucket(t *testing.T, f *fleet) {
	ctx := fleettest.Context(t, 20*time.Second)
	js, _ := jetstream.New(f.ops)
	kv, err := js.KeyValue(ctx, f.names.TenantsBucket())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, tenantA, []byte(`{"v":1,"max_inflight":3}`)); err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, tenantA); err != nil || !strings.Contains(string(e.Value()), "max_inflight") {
		t.Fatalf("get = %v", err)
	}
	if err := kv.Purge(ctx, tenantA); err != nil {
		t.Fatal(err)
	}
}
