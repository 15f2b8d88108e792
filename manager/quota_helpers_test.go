package manager_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
)

// setTenant writes tenant's entry in the tenants bucket, as `chatfleet
// tenant set` does, creating the topology first if no worker has.
func setTenant(t *testing.T, ctx context.Context, f *fleettest.Fleet, tenant string, limits protocol.Tenant) {
	t.Helper()
	top := jobs(t, f)
	limits.V = protocol.TenantVersion
	b, err := json.Marshal(limits)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := top.Tenants.Put(ctx, tenant, b); err != nil {
		t.Fatal(err)
	}
}

// tenantJob is a job of tenant whose prompt starts with the tenant's name,
// so the upstream can tell tenants apart (ofTenant).
func tenantJob(tenant string, i int) protocol.Job {
	j := userJob(fmt.Sprintf("%s-%d", tenant, i))
	j.Tenant = tenant
	return j
}

// ofTenant matches the upstream requests of tenantJob(tenant, …).
func ofTenant(tenant string) func(llmtest.Request) bool {
	return func(r llmtest.Request) bool { return strings.HasPrefix(r.LastUserMessage(), tenant+"-") }
}

// stallTenants makes the upstream stall the calls of the given tenants'
// jobs until release; others are answered at once.
func stallTenants(tenants ...string) (llmtest.Option, func()) {
	ch := make(chan struct{})
	var once sync.Once
	return llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		rep := llmtest.DefaultReply(r)
		for _, tenant := range tenants {
			if ofTenant(tenant)(r) {
				rep.StallAfter, rep.Release = -1, ch
			}
		}
		return rep
	}), func() { once.Do(func() { close(ch) }) }
}

// sofar returns the reply's events so far.
func (l *eventLog) sofar() []protocol.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]protocol.Event(nil), l.events...)
}

// waitEvent waits until the reply has an event that matches and returns
// it.
func (l *eventLog) waitEvent(t *testing.T, ctx context.Context, match func(protocol.Event) bool) protocol.Event {
	t.Helper()
	l.waitFor(t, ctx, func(evs []protocol.Event) bool { return count(evs, match) > 0 })
	for _, ev := range l.sofar() {
		if match(ev) {
			return ev
		}
	}
	panic("unreachable")
}

// end waits for the reply's end and returns its terminal event.
func (l *eventLog) end(t *testing.T) protocol.Event {
	t.Helper()
	evs := l.wait(t)
	if len(evs) == 0 {
		t.Fatal("the reply had no events")
	}
	return evs[len(evs)-1]
}

// describeEvents names each event: its type, and its reason or code.
func describeEvents(evs []protocol.Event) []string {
	var out []string
	for _, ev := range evs {
		s := string(ev.Type)
		if ev.Reason != "" {
			s += "/" + ev.Reason
		}
		if ev.Error != nil {
			s += "/" + string(ev.Error.Code)
		}
		out = append(out, s)
	}
	return out
}

// countWaiting waits until each of logs either generates or waits for
// reason, and returns how many waited first.
func countWaiting(t *testing.T, ctx context.Context, logs []*eventLog, reason string) int {
	t.Helper()
	waited := 0
	for _, l := range logs {
		ev := l.waitEvent(t, ctx, func(ev protocol.Event) bool {
			return ev.Type == protocol.EventProgress && (ev.Stage == protocol.StageGenerating || ev.Reason == reason)
		})
		if ev.Stage == protocol.StageWaiting {
			waited++
		}
	}
	return waited
}

// wantAllDone checks that every one of logs ended with done; what names
// them in an error ("job", "A's job").
func wantAllDone(t *testing.T, what string, logs ...*eventLog) {
	t.Helper()
	for i, l := range logs {
		if end := l.end(t); end.Type != protocol.EventDone {
			t.Errorf("%s %d: %v", what, i, describeEvents(l.sofar()))
		}
	}
}
