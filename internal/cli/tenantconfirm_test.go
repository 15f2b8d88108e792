package cli_test

import (
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/topology"
	"github.com/chatfleet/chatfleet/worker"
)

// TestTenantChangeWaitsForWorkers: `tenant pause` returns once every
// worker says it has applied the change: the real worker at once; one
// that keeps saying it has not (a worker whose watch of the bucket lags,
// played here by a service answering as one) is waited for, then named
// on stderr. A worker that says nothing of it (an earlier version) is not
// waited for.
func TestTenantChangeWaitsForWorkers(t *testing.T) {
	f := newFleet(t, nil)
	ctx := fleettest.Context(t, time.Minute)
	if res := run(ctx, "", "tenant", "pause", "acme"); res.code != 0 || res.err != "" {
		t.Fatalf("pause with an up-to-date worker: %v", res)
	}

	stale := uint64(1)
	lagging := worker.Status{Worker: "lagging", Prefix: "chat", TenantsRevision: &stale}
	older := worker.Status{Worker: "older", Prefix: "chat"}
	for _, st := range []worker.Status{lagging, older} {
		svc, err := micro.AddService(natstest.Connect(t, f.NATS.ClientURL()), micro.Config{Name: worker.ServiceName, Version: "0.0.1",
			StatsHandler: func(*micro.Endpoint) any { return st }})
		if err != nil {
			t.Fatal(err)
		}
		if err := svc.AddEndpoint("status", micro.HandlerFunc(func(req micro.Request) { _ = req.RespondJSON(st) })); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = svc.Stop() })
	}
	res := run(ctx, "", "tenant", "resume", "acme")
	if res.code != 0 || res.out != "tenant acme resumed\n" || !strings.Contains(res.err, "1 of 3 workers have not applied the change yet") {
		t.Fatalf("resume with a lagging worker: %v", res)
	}
	// The status the lagging one answers says so, in the JSON workers send.
	b, _ := json.Marshal(lagging)
	if !strings.Contains(string(b), `"tenants_revision":1`) {
		t.Errorf("status JSON %s", b)
	}
}

// TestTenantChangeWaitsForAWorkerThatFellSilent: a worker that said it
// had not applied the change, then misses the next round of asking (busy
// for a moment, say), still has not applied it: the command goes on
// waiting for it and says so on stderr, rather than return as if every
// worker had applied the change.
func TestTenantChangeWaitsForAWorkerThatFellSilent(t *testing.T) {
	f := newFleet(t, nil)
	ctx := fleettest.Context(t, time.Minute)
	stats := statsAnswer(t, "lagging", 0) // before any entry
	nc := natstest.Connect(t, f.NATS.ClientURL())
	var asked atomic.Bool
	if _, err := nc.Subscribe("$SRV.STATS."+worker.ServiceName, func(m *nats.Msg) {
		if !asked.Swap(true) { // the first round only
			_ = m.Respond(stats)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	res := run(ctx, "", "tenant", "pause", "acme")
	if res.code != 0 || !strings.Contains(res.err, "have not applied the change yet") {
		t.Fatalf("pause with a worker behind that then fell silent: %v", res)
	}
}

// TestTenantChangeAsksAtAPace: a worker that said it had not applied the
// change and then stopped leaves no worker to answer: each later round of
// asking ends at once ("no responders"). The command asks at most once
// per round's wait (250 ms) until it gives up after 3 s, not in a tight
// loop: its connection publishes a few dozen messages, not thousands.
func TestTenantChangeAsksAtAPace(t *testing.T) {
	f := fleettest.New(t, fleettest.Options{})
	useNATS(t, f.NATS.ClientURL())
	ctx := fleettest.Context(t, time.Minute)
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	if _, err := topology.Ensure(ctx, js, f.Topology); err != nil {
		t.Fatal(err)
	}
	stats := statsAnswer(t, "gone", 0)
	nc := natstest.Connect(t, f.NATS.ClientURL())
	var sub *nats.Subscription
	sub, err := nc.Subscribe("$SRV.STATS."+worker.ServiceName, func(m *nats.Msg) {
		_ = m.Respond(stats)
		_ = sub.Unsubscribe() // answers once, then is gone
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if res := run(ctx, "", "tenant", "pause", "acme"); res.code != 0 {
		t.Fatalf("pause: %v", res)
	}
	var closed *server.Connz
	fleettest.Poll(t, ctx, "the command's connection to be closed", func() bool {
		closed, err = f.NATS.NATS().Connz(&server.ConnzOptions{State: server.ConnClosed})
		return err == nil && len(closed.Conns) > 0
	})
	if n := closed.Conns[0].InMsgs; n > 40 {
		t.Errorf("the command published %d messages; want a few dozen at most", n)
	}
}

// statsAnswer is a worker's answer to $SRV.STATS saying it has applied
// the tenants bucket up to revision applied.
func statsAnswer(t *testing.T, id string, applied uint64) []byte {
	t.Helper()
	data, err := json.Marshal(worker.Status{Worker: id, Prefix: "chat", TenantsRevision: &applied})
	if err != nil {
		t.Fatal(err)
	}
	stats, err := json.Marshal(micro.Stats{Endpoints: []*micro.EndpointStats{{Name: "status", Data: data}}})
	if err != nil {
		t.Fatal(err)
	}
	return stats
}
