//go:build faults

package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/topology"
)

// TestConnectionDrop: the server closes one client's connection while 20
// answers stream; the client reconnects and the server stays up.
//
// When the publisher's connection drops, its replies miss the events
// published meanwhile on their live subscriptions; each notices the gap
// (or, quiet, probes the stream) and reads what it missed from the
// replies stream. When a worker's connection drops, its events published
// meanwhile wait in the client's reconnect buffer. Either way every job
// is answered in full with exactly one terminal event.
func TestConnectionDrop(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		conn func(*fleet) *nats.Conn
	}{
		{name: "publisher", conn: func(f *fleet) *nats.Conn { return f.pubNC }},
		{name: "worker", conn: func(f *fleet) *nats.Conn { return f.workerNCs[0] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			testConnectionDrop(t, tt.conn)
		})
	}
}

func testConnectionDrop(t *testing.T, conn func(*fleet) *nats.Conn) {
	srv := natstest.RunServer(t)
	script, release := paused(3, 20*time.Millisecond)
	f := newFleet(t, srv.ClientURL(), options{
		llm:     []llmtest.Option{script},
		topo:    topology.Config{AckWait: 5 * time.Second}, // a lost ack costs 5s, not 30
		workers: 2,
		release: release,
	})
	ctx := fleettest.Context(t, time.Minute)

	jobs := make([]*job, 20)
	for i := range jobs {
		jobs[i] = f.submit(ctx, fmt.Sprintf("drop-%02d", i), fmt.Sprintf("drop prompt %d", i))
	}
	waitTokens(t, ctx, jobs, 3)
	if err := f.waitStored(ctx, jobs); err != nil {
		t.Fatal(err)
	}

	id, err := conn(f).GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	_, _, before := f.links.counts()
	// Drop the connection once the answers stream again, so events go out
	// while it is away.
	release()
	waitTokens(t, ctx, jobs, 4)
	if err := srv.NATS().DisconnectClientByID(id); err != nil {
		t.Fatal(err)
	}
	if err := f.links.wait(ctx, "the connection to come back", func(_, _, r int) bool { return r > before }); err != nil {
		t.Fatal(err)
	}

	waitDone(t, ctx, jobs)
	if err := f.waitDrained(ctx); err != nil {
		t.Error(err)
	}
	f.stopWorkers()
	f.checkAnswers(ctx, jobs)
	if calls := f.callsByPrompt(); len(calls) != len(jobs) || f.upstream.Calls() < len(jobs) {
		t.Errorf("%d upstream calls for %d prompts; want at least one for each of %d jobs", f.upstream.Calls(), len(calls), len(jobs))
	}
}
