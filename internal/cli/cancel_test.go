package cli_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/protocol"
)

func userJob(tenant, id, prompt string) protocol.Job {
	return protocol.Job{Tenant: tenant, ID: id, Messages: []protocol.Message{
		{Role: protocol.RoleUser, Content: protocol.TextContent(prompt)},
	}}
}

// TestCancelRunning: cancel stops a request running on a worker: the
// upstream call is dropped and the reply ends cancelled. Cancelling it
// again finds it finished.
func TestCancelRunning(t *testing.T) {
	stall, release := fleettest.Stalled()
	defer release()
	f := newFleet(t, nil, stall)
	ctx := fleettest.Context(t, 30*time.Second)

	reply, err := f.Pub.Submit(ctx, userJob("acme", "to-cancel", "a very long answer please"))
	if err != nil {
		t.Fatal(err)
	}
	reply.Stop() // read it back with Attach below, as another process would
	if err := f.LLM.WaitCalls(ctx, 1); err != nil {
		t.Fatalf("the request never reached the upstream: %v", err)
	}

	res := run(ctx, "", "cancel", "--tenant", "acme", "to-cancel")
	if res.code != 0 || res.out != "cancel requested for acme/to-cancel\n" {
		t.Fatalf("cancel: %v", res)
	}
	attached, err := f.Pub.Attach(ctx, "acme", "to-cancel")
	if err != nil {
		t.Fatal(err)
	}
	defer attached.Stop()
	var types []protocol.EventType
	for ev, err := range attached.Events(ctx) {
		if err != nil {
			t.Fatalf("reading the reply: %v (events so far %v)", err, types)
		}
		types = append(types, ev.Type)
	}
	if len(types) == 0 || types[len(types)-1] != protocol.EventCancelled {
		t.Fatalf("reply events = %v, want them to end with cancelled", types)
	}
	if err := f.LLM.WaitDisconnects(ctx, 1); err != nil {
		t.Errorf("the upstream call was not dropped: %v", err)
	}

	res = run(ctx, "", "cancel", "--tenant", "acme", "to-cancel")
	if res.code != 1 || !strings.Contains(res.err, "acme/to-cancel has already finished") {
		t.Errorf("second cancel: %v; want exit 1, already finished", res)
	}
}

// TestCancelFinished: cancelling a request that is done fails with exit 1;
// the tenant defaults to "default".
func TestCancelFinished(t *testing.T) {
	f := newFleet(t, nil)
	ctx := fleettest.Context(t, 30*time.Second)

	if res := run(ctx, "", "ask", "--id", "done-1", "quick one"); res.code != 0 {
		t.Fatalf("ask: %v", res)
	}
	res := run(ctx, "", "cancel", "done-1")
	if res.code != 1 || !strings.Contains(res.err, "default/done-1 has already finished") || res.out != "" {
		t.Errorf("cancel: %v; want exit 1, already finished", res)
	}
	// The same ID in another tenant is another request, not finished.
	res = run(ctx, "", "cancel", "--tenant", "other", "done-1")
	if res.code != 0 {
		t.Errorf("cancel in another tenant: %v; want exit 0", res)
	}
	if f.LLM.Calls() != 1 {
		t.Errorf("upstream calls = %d, want 1", f.LLM.Calls())
	}
}

// TestCancelBadNames: a tenant or ID that cannot name a request is a
// usage error, found before anything connects, its character shown.
func TestCancelBadNames(t *testing.T) {
	useNATS(t, "nats://127.0.0.1:1")
	ctx := fleettest.Context(t, 30*time.Second)
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"cancel", "a.b"}, `invalid id "a.b": contains '.'`},
		{[]string{"cancel", "--tenant", "zoë", "x"}, `invalid tenant "zoë": contains 'ë'`},
	} {
		if res := run(ctx, "", tc.args...); res.code != 2 || !strings.Contains(res.err, tc.err) {
			t.Errorf("%v: %v; want exit 2 and %q", tc.args, res, tc.err)
		}
	}
}

// TestCancelUsage: cancel needs exactly one ID; flags are checked before
// anything connects.
func TestCancelUsage(t *testing.T) {
	useNATS(t, "nats://127.0.0.1:1")
	ctx := fleettest.Context(t, 30*time.Second)
	for _, args := range [][]string{
		{"cancel"},
		{"cancel", "--tenant", "acme"},
		{"cancel", "a", "b"},
		{"cancel", "--bogus", "a"},
	} {
		res := run(ctx, "", args...)
		if res.code != 2 || !strings.Contains(res.err, "Usage: chatfleet cancel") {
			t.Errorf("%v: %v; want exit 2 and the usage", args, res)
		}
	}
}
