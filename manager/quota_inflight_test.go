package manager_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/topology"
)

// TestTenantInflightAcrossFleet: four worker processes, a tenant limited
// to 3 generations in flight: the upstream
// never sees more than 3 of its calls at once, the jobs that wait say so
// (progress, tenant_inflight), and they wait parked, so another tenant's
// jobs are pulled and answered meanwhile — though the waiting jobs
// outnumber the fleet's request slots.
func TestTenantInflightAcrossFleet(t *testing.T) {
	t.Parallel()
	stall, release := stallTenants("A")
	defer release()
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{stall}})
	ctx := ctxFor(t, time.Minute)
	setTenant(t, ctx, f, "A", protocol.Tenant{MaxInflight: 3})
	for i := range 4 { // 8 request slots in all
		startChildWorker(t, f, fmt.Sprintf("p%d", i), "CHATFLEET_MAX_CONCURRENT_REQUESTS=2")
	}
	var as []*eventLog
	for i := range 12 {
		as = append(as, submitEvents(t, ctx, f.Pub, tenantJob("A", i)))
	}
	// Each job either generates (stalled at the upstream) or waits for
	// A's share, and says which.
	waited := countWaiting(t, ctx, as, protocol.ReasonTenantInflight)
	// (At least 9: a job whose first try failed on a transient error
	// waits, and may then take a share.)
	if waited < 9 || f.LLM.Active(ofTenant("A")) != 3 {
		t.Errorf("%d of A's jobs wait for its share, %d at the upstream; want 9 and 3", waited, f.LLM.Active(ofTenant("A")))
	}
	// The other tenant is answered while A's nine wait, though they
	// outnumber the fleet's request slots.
	for i := range 8 {
		if _, err := f.Pub.Complete(ctx, tenantJob("B", i)); err != nil {
			t.Fatalf("tenant B's job %d while A waits: %v", i, err)
		}
	}
	if got := f.LLM.Active(ofTenant("A")); got != 3 {
		t.Errorf("A's calls at the upstream while it waits: %d, want 3", got)
	}
	release()
	wantAllDone(t, "A's job", as...)
	if got := f.LLM.MaxConcurrent(ofTenant("A")); got != 3 {
		t.Errorf("A's calls at once at the upstream: at most %d, want 3 (its limit, reached)", got)
	}
}

// TestTenantInflightLimitChangedLive: raising a tenant's max_inflight
// while its jobs wait lets more of them run at once, on the workers
// already running; lowering it stops new ones until as few run.
func TestTenantInflightLimitChangedLive(t *testing.T) {
	t.Parallel()
	stall, release := stallTenants("L")
	defer release()
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{stall}})
	ctx := ctxFor(t, time.Minute)
	setTenant(t, ctx, f, "L", protocol.Tenant{MaxInflight: 1})
	f.StartWorker(nil)
	f.StartWorker(nil)
	var ls []*eventLog
	for i := range 6 {
		ls = append(ls, submitEvents(t, ctx, f.Pub, tenantJob("L", i)))
	}
	if err := f.LLM.WaitActive(ctx, ofTenant("L"), 1); err != nil {
		t.Fatal(err)
	}
	setTenant(t, ctx, f, "L", protocol.Tenant{MaxInflight: 3})
	if err := f.LLM.WaitActive(ctx, ofTenant("L"), 3); err != nil {
		t.Fatalf("after raising the limit to 3: %v (%d at the upstream)", err, f.LLM.Active(ofTenant("L")))
	}
	if got := f.LLM.MaxConcurrent(ofTenant("L")); got != 3 {
		t.Errorf("L's calls at once: at most %d, want 3", got)
	}
	release()
	wantAllDone(t, "L's job", ls...)
}

// TestTenantShareOfDeadWorker: a worker process holding a tenant's only
// in-flight share is killed (SIGKILL); the share comes back within the
// lease TTL, and a job waiting for it on another worker runs. The two
// never reach the upstream at once.
func TestTenantShareOfDeadWorker(t *testing.T) {
	t.Parallel()
	testShareOfDeadWorker(t, protocol.ReasonTenantInflight, func(ctx context.Context, f *fleettest.Fleet) {
		setTenant(t, ctx, f, "K", protocol.Tenant{MaxInflight: 1})
	})
}

// testShareOfDeadWorker kills (SIGKILL) a worker process holding the only
// share of a fleet-wide limit that limit sets, for tenant K's jobs: the
// share comes back within the lease TTL, and a job waiting for it (for
// reason) on another worker runs. The two never reach the upstream at
// once.
func testShareOfDeadWorker(t *testing.T, reason string, limit func(context.Context, *fleettest.Fleet)) {
	stall, release := stallTenants("K")
	defer release()
	ttl := 2 * time.Second
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{stall},
		Topology: topology.Config{LeaseTTL: ttl, AckWait: 2 * time.Second}})
	ctx := ctxFor(t, time.Minute)
	limit(ctx, f)
	// One request slot and no parking: the doomed worker takes K's first
	// job and no other.
	child, _ := startChildWorker(t, f, "doomed", "CHATFLEET_MAX_CONCURRENT_REQUESTS=1", "CHATFLEET_MAX_PARKED_JOBS=0")
	first := submitEvents(t, ctx, f.Pub, tenantJob("K", 1))
	if err := f.LLM.WaitActive(ctx, ofTenant("K"), 1); err != nil {
		t.Fatal(err)
	}
	f.StartWorker(nil)
	second := submitEvents(t, ctx, f.Pub, tenantJob("K", 2))
	second.waitEvent(t, ctx, progressOf(protocol.StageWaiting, reason))

	if err := child.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = child.Wait()
	killed := time.Now()
	if err := f.LLM.WaitCalls(ctx, 2); err != nil {
		t.Fatalf("the dead worker's share never came back: %v", err)
	}
	t.Logf("the share came back %s after the kill (lease TTL %s)", time.Since(killed).Round(10*time.Millisecond), ttl)
	if r := f.LLM.Requests()[1]; r.LastUserMessage() != "K-2" {
		t.Errorf("second upstream call for %q, want K-2", r.LastUserMessage())
	}
	release()
	wantAllDone(t, "job", first, second)
	if got := f.LLM.MaxConcurrent(ofTenant("K")); got != 1 {
		t.Errorf("K's calls at once: at most %d, want 1", got)
	}
}
