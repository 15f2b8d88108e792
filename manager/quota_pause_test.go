package manager_test

import (
	"context"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/worker"
)

// TestTenantPaused: a paused tenant's jobs wait when pulled, saying so
// (progress, tenant_paused, before anything else), without an upstream
// call and without their request slots, so another tenant's jobs run
// meanwhile; a paused job can be cancelled, ends with queue_timeout once
// its queue timeout has passed, and the rest are answered on resume.
func TestTenantPaused(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	ctx := ctxFor(t, time.Minute)
	setTenant(t, ctx, f, "P", protocol.Tenant{Paused: true})
	f.StartWorker(func(c *worker.Config) { c.Manager.MaxConcurrentRequests = 2 })
	var ps []*eventLog
	for i := range 4 {
		ps = append(ps, submitEvents(t, ctx, f.Pub, tenantJob("P", i)))
	}
	for i, p := range ps {
		if first := p.waitEvent(t, ctx, func(protocol.Event) bool { return true }); !progressOf(protocol.StageWaiting, protocol.ReasonTenantPaused)(first) {
			t.Errorf("paused job %d: first event %+v, want progress waiting for tenant_paused", i, first)
		}
	}
	for i := range 3 {
		if _, err := f.Pub.Complete(ctx, tenantJob("Q", i)); err != nil {
			t.Fatalf("tenant Q's job %d while P is paused: %v", i, err)
		}
	}
	short := tenantJob("P", 9)
	short.QueueTimeoutMS = 200
	expired := submitEvents(t, ctx, f.Pub, short)
	if end := expired.end(t); end.Type != protocol.EventError || end.Error.Code != protocol.CodeQueueTimeout {
		t.Errorf("a paused job past its queue timeout: %v", describeEvents(expired.sofar()))
	}
	if err := f.Pub.Cancel(ctx, "P", ps[0].sofar()[0].ID); err != nil {
		t.Fatal(err)
	}
	if end := ps[0].end(t); end.Type != protocol.EventCancelled {
		t.Errorf("a cancelled paused job: %v", describeEvents(ps[0].sofar()))
	}
	for i := range 4 {
		if n := f.LLM.CallsFor(tenantJob("P", i).Messages[0].Content.Text); n != 0 {
			t.Errorf("paused job %d called the upstream %d times", i, n)
		}
	}

	setTenant(t, ctx, f, "P", protocol.Tenant{})
	for i, p := range ps[1:] {
		if end := p.end(t); end.Type != protocol.EventDone {
			t.Errorf("job %d after the resume: %v", i+1, describeEvents(p.sofar()))
		}
	}
}

// TestTenantMaxQueued: a tenant's own max_queued, below the fleet's cap:
// the maintainer ends its newest queued jobs beyond it with
// quota_exceeded and removes them from the queue; the oldest ones are
// answered once a worker is free. It counts the tenant's jobs of every
// priority (each waits in a queue of its own).
func TestTenantMaxQueued(t *testing.T) {
	t.Parallel()
	for name, prios := range map[string][]protocol.Priority{
		"normal":           {"", "", "", "", ""},
		"mixed priorities": {protocol.PriorityHigh, protocol.PriorityLow, protocol.PriorityNormal, protocol.PriorityHigh, protocol.PriorityLow},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tenantMaxQueued(t, prios)
		})
	}
}

func tenantMaxQueued(t *testing.T, prios []protocol.Priority) {
	stall, release := stallTenants("X")
	defer release()
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{stall}})
	ctx := ctxFor(t, time.Minute)
	setTenant(t, ctx, f, "A", protocol.Tenant{MaxQueued: 2})
	f.StartWorker(func(c *worker.Config) { c.Manager.MaxConcurrentRequests = 1 })
	busy := submitEvents(t, ctx, f.Pub, tenantJob("X", 1)) // takes the worker's only request slot
	if err := f.LLM.WaitActive(ctx, ofTenant("X"), 1); err != nil {
		t.Fatal(err)
	}
	var as []*eventLog
	for i, p := range prios {
		j := tenantJob("A", i)
		j.Priority = p
		as = append(as, submitEvents(t, ctx, f.Pub, j))
	}
	for i, a := range as[2:] {
		end := a.end(t)
		if end.Type != protocol.EventError || end.Error.Code != protocol.CodeQuotaExceeded || end.Error.Limit != protocol.LimitMaxQueued {
			t.Errorf("A's job %d, over max_queued: %v", i+2, describeEvents(a.sofar()))
		}
	}
	for i, a := range as[:2] {
		if evs := a.sofar(); len(evs) != 0 {
			t.Errorf("A's job %d, within max_queued, already has events: %v", i, describeEvents(evs))
		}
	}
	release()
	wantAllDone(t, "job", append(as[:2], busy)...)
	if _, err := f.Pub.Complete(ctx, tenantJob("A", 2)); err != nil {
		t.Errorf("A again, its queue empty: %v", err)
	}
}

// TestPausedJobHandedBackOnStop: a stopping worker hands its paused jobs
// back at once, rather than hold its stop for the whole grace period;
// another worker parks them, and answers them on resume.
func TestPausedJobHandedBackOnStop(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	ctx := ctxFor(t, time.Minute)
	setTenant(t, ctx, f, "P", protocol.Tenant{Paused: true})
	w1 := f.StartWorker(nil)
	p := submitEvents(t, ctx, f.Pub, tenantJob("P", 1))
	p.waitEvent(t, ctx, progressOf(protocol.StageWaiting, protocol.ReasonTenantPaused))
	w2 := f.StartWorker(nil)
	grace, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := w1.Stop(grace); err != nil {
		t.Fatalf("stopping a worker with a paused job: %v; want it handed back within the grace period", err)
	}
	p.waitFor(t, ctx, func(evs []protocol.Event) bool {
		return count(evs, progressOf(protocol.StageWaiting, protocol.ReasonTenantPaused)) >= 2 // parked again, on w2
	})
	setTenant(t, ctx, f, "P", protocol.Tenant{})
	evs := p.wait(t)
	if end := evs[len(evs)-1]; end.Type != protocol.EventDone {
		t.Fatalf("after the resume: %v", describeEvents(evs))
	}
	for _, ev := range evs {
		if ev.Type == protocol.EventMeta && ev.Worker != w2.ID() {
			t.Errorf("served by %s, want %s", ev.Worker, w2.ID())
		}
	}
}
