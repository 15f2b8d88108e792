package manager_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/manager"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/worker"
)

// TestTenantTokenLimits: a tenant's tokens per minute count the tokens its
// generations used, fleet-wide, in UTC calendar minutes. A tenant that
// rejects at its limits gets quota_exceeded with the time until the
// minute ends; a cache hit is free and still served; a tenant that waits
// reports it and goes on when its limit is raised, live; a day window
// that opens only after the job's deadline ends it at once.
func TestTenantTokenLimits(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	ctx := ctxFor(t, time.Minute)
	setTenant(t, ctx, f, "T", protocol.Tenant{TokensPerMinute: 10, OnLimit: protocol.OnLimitReject})
	w := f.StartWorker(nil)
	now := time.Date(2026, 11, 30, 12, 0, 30, 0, time.UTC) // 30s before the minute ends
	w.Manager().SetQuotaClock(func() time.Time { return now })

	first, err := f.Pub.Complete(ctx, tenantJob("T", 1))
	if err != nil {
		t.Fatal(err)
	}
	if first.Usage == nil || first.Usage.TotalTokens < 10 {
		t.Fatalf("the first answer's usage %+v: want at least the limit, 10", first.Usage)
	}
	// The leader counted them before it published the end; this worker
	// learns of it from the bucket.
	if err := w.Manager().WaitTenant(ctx, "T", func(_ protocol.Tenant, u protocol.TenantTokens) bool {
		m, _ := u.At(now)
		return m == int64(first.Usage.TotalTokens)
	}); err != nil {
		t.Fatal(err)
	}

	_, err = f.Pub.Complete(ctx, tenantJob("T", 2))
	var jerr *publisher.JobError
	if !errors.Is(err, publisher.ErrQuotaExceeded) || !errors.As(err, &jerr) || jerr.Err.Limit != protocol.LimitTokensPerMinute ||
		jerr.Err.RetryAfterMS != 30_000 {
		t.Fatalf("over the minute's tokens: %v (%+v); want quota_exceeded for tokens_per_minute, retry after 30000 ms", err, jerr)
	}
	if n := f.LLM.CallsFor("T-2"); n != 0 {
		t.Errorf("the refused job called the upstream %d times", n)
	}
	cached, err := f.Pub.Complete(ctx, tenantJob("T", 1))
	if err != nil || !cached.Cached {
		t.Fatalf("a cache hit over the limit: %+v, %v; want it served from the cache", cached, err)
	}

	setTenant(t, ctx, f, "T", protocol.Tenant{TokensPerMinute: 10})
	if err := w.Manager().WaitTenant(ctx, "T", func(l protocol.Tenant, _ protocol.TenantTokens) bool { return !l.Rejects() }); err != nil {
		t.Fatal(err)
	}
	waits := submitEvents(t, ctx, f.Pub, tenantJob("T", 3))
	waits.waitEvent(t, ctx, progressOf(protocol.StageWaiting, protocol.ReasonTenantTokens))
	setTenant(t, ctx, f, "T", protocol.Tenant{TokensPerMinute: 1000})
	if end := waits.end(t); end.Type != protocol.EventDone {
		t.Fatalf("the waiting job after its limit was raised: %v", describeEvents(waits.sofar()))
	}

	// A day used up: its window opens after the job's deadline, so even a
	// tenant that waits is told at once.
	setTenant(t, ctx, f, "T", protocol.Tenant{TokensPerDay: 10})
	if err := w.Manager().WaitTenant(ctx, "T", func(l protocol.Tenant, _ protocol.TenantTokens) bool { return l.TokensPerDay == 10 }); err != nil {
		t.Fatal(err)
	}
	_, err = f.Pub.Complete(ctx, tenantJob("T", 4))
	if !errors.As(err, &jerr) || jerr.Err.Limit != protocol.LimitTokensPerDay || jerr.Err.RetryAfterMS != (11*time.Hour+59*time.Minute+30*time.Second).Milliseconds() {
		t.Fatalf("over the day's tokens: %v; want quota_exceeded for tokens_per_day, retry at midnight UTC", err)
	}

	want := manager.TenantUsage{Done: 3, Errors: 2, QuotaExceeded: 2, SavedByCache: int64(first.Usage.TotalTokens)}
	u := eventuallyUsage(t, ctx, w, "T", func(u manager.TenantUsage) bool { return u.Done+u.Errors == 5 })
	if u.PromptTokens == 0 || u.CompletionTokens == 0 {
		t.Errorf("T's usage on the worker: no tokens: %+v", u)
	}
	u.PromptTokens, u.CompletionTokens = 0, 0
	if u != want {
		t.Errorf("T's usage on the worker: %+v, want %+v (and tokens)", u, want)
	}
}

// TestDoneBilling: done says what the request itself cost (billed_usage:
// the generation's usage for its leader, nothing for a follower or a cache
// hit) and whether its generation was shared.
func TestDoneBilling(t *testing.T) {
	t.Parallel()
	stall, release := fleettest.Stalled()
	defer release()
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{stall}})
	w := f.StartWorker(nil)
	ctx := ctxFor(t, time.Minute)
	job := userJob("shared by two")
	leader := submitEvents(t, ctx, f.Pub, job)
	leader.waitEvent(t, ctx, func(ev protocol.Event) bool { return ev.Role == protocol.RoleLeader })
	follower := submitEvents(t, ctx, f.Pub, job)
	follower.waitEvent(t, ctx, func(ev protocol.Event) bool { return ev.Role == protocol.RoleFollower })
	release()
	lead, fol := leader.end(t), follower.end(t)
	if lead.Type != protocol.EventDone || fol.Type != protocol.EventDone || lead.Usage == nil {
		t.Fatalf("ends: %+v, %+v", lead, fol)
	}
	if !lead.Shared || lead.BilledUsage == nil || *lead.BilledUsage != *lead.Usage {
		t.Errorf("leader's done: shared %v, billed %+v; want shared, billed its usage %+v", lead.Shared, lead.BilledUsage, lead.Usage)
	}
	if !fol.Shared || fol.BilledUsage == nil || *fol.BilledUsage != (protocol.Usage{}) || fol.Usage == nil {
		t.Errorf("follower's done: shared %v, billed %+v, usage %+v; want shared, billed nothing", fol.Shared, fol.BilledUsage, fol.Usage)
	}
	cached := submitEvents(t, ctx, f.Pub, job).end(t)
	if !cached.Cached || cached.Shared || cached.BilledUsage == nil || *cached.BilledUsage != (protocol.Usage{}) {
		t.Errorf("cache hit's done: %+v; want cached, not shared, billed nothing", cached)
	}
	alone := submitEvents(t, ctx, f.Pub, userJob("nobody shares this")).end(t)
	if alone.Shared || alone.BilledUsage == nil || alone.BilledUsage.TotalTokens == 0 {
		t.Errorf("a lone leader's done: %+v; want not shared, billed its usage", alone)
	}
	u := eventuallyUsage(t, ctx, w, manager.OtherTenants, func(u manager.TenantUsage) bool { return u.Done == 4 })
	if u.SavedByDedupe != int64(lead.Usage.TotalTokens) || u.SavedByCache != int64(lead.Usage.TotalTokens) {
		t.Errorf("usage of tenants not in the bucket: %+v", u)
	}
}

// eventuallyUsage returns w's usage counters of tenant once cond holds: a
// request is counted once it is settled, just after its reply ended, so
// this polls, with ctx's deadline.
func eventuallyUsage(t *testing.T, ctx context.Context, w *worker.Worker, tenant string, cond func(manager.TenantUsage) bool) manager.TenantUsage {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		u := w.Manager().TenantUsage()[tenant]
		if cond(u) {
			return u
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("%s's usage: %+v", tenant, u)
		}
	}
}
