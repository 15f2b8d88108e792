//go:build faults

package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/topology"
)

// TestServerRestart: the only NATS server is shut down and started again
// on the same port and store while 20 jobs are being answered. Workers and
// the publisher reconnect; every job is answered in full, every reply
// holds its events once, in order, ending with exactly one terminal event,
// no job is left in the queue, a cancel sent after the restart reaches its
// running request, and a job submitted after the restart is answered.
//
// Each answer streams 3 tokens, pauses, and goes on when the test releases
// it: after the restart ("upstream paused"), or just as the server goes
// away, so that events are in flight at the fault ("events in flight"). In
// "longer than AckWait" the server stays away past AckWait, so JetStream
// redelivers the running jobs when it comes back while their first
// deliveries still run: one reply, two would-be writers.
func TestServerRestart(t *testing.T) {
	t.Parallel()
	tests := []restartCase{
		{name: "upstream paused", ackWait: 5 * time.Second},
		{name: "events in flight", ackWait: 5 * time.Second, inFlight: true},
		{name: "longer than AckWait", ackWait: 2 * time.Second, outage: 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			testServerRestart(t, tt)
		})
	}
}

type restartCase struct {
	name     string
	ackWait  time.Duration
	inFlight bool          // release the answers as the server goes away
	outage   time.Duration // beyond every client noticing the server left
}

func testServerRestart(t *testing.T, tt restartCase) {
	dir := t.TempDir()
	srv := natstest.RunServerIn(t, dir)
	addr := hostPort(t, srv.ClientURL())
	script, release := paused(3, 20*time.Millisecond)
	f := newFleet(t, srv.ClientURL(), options{
		llm:     []llmtest.Option{script},
		topo:    topology.Config{AckWait: tt.ackWait},
		workers: 2,
		release: release,
	})
	ctx := fleettest.Context(t, time.Minute)

	jobs := make([]*job, 20)
	for i := range jobs {
		jobs[i] = f.submit(ctx, fmt.Sprintf("restart-%02d", i), fmt.Sprintf("restart prompt %d", i))
	}
	cancelled := f.submit(ctx, "restart-cancel", "restart prompt to cancel")
	waitTokens(t, ctx, append(jobs, cancelled), 3)
	if err := f.waitStored(ctx, append(jobs, cancelled)); err != nil {
		t.Fatal(err)
	}

	conns, before, _ := f.links.counts()
	if tt.inFlight {
		release()
	}
	srv.Shutdown()
	if err := f.links.wait(ctx, "every connection to notice", func(_, d, _ int) bool { return d >= before+conns }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(tt.outage) // the fault itself: the server stays away this long
	natstest.RunServerAt(t, addr, dir)
	if err := f.links.wait(ctx, "every connection to come back", func(c, _, r int) bool { return r >= c }); err != nil {
		t.Fatal(err)
	}
	if !tt.inFlight {
		// The cancel reaches its request through a watch of the cancel
		// bucket that has lived through the restart.
		if err := f.pub.Cancel(ctx, protocol.DefaultTenant, "restart-cancel"); err != nil {
			t.Fatal(err)
		}
		waitDone(t, ctx, []*job{cancelled})
		release()
	}
	jobs = append(jobs, f.submit(ctx, "restart-after", "restart prompt after the restart"))

	waitDone(t, ctx, jobs)
	if err := f.waitDrained(ctx); err != nil {
		t.Error(err)
	}
	f.stopWorkers()
	f.checkAnswers(ctx, jobs)
	if !tt.inFlight {
		f.checkCancelled(ctx, cancelled)
	}
	if calls := f.callsByPrompt(); len(calls) != len(jobs)+1 || f.upstream.Calls() < len(jobs)+1 {
		t.Errorf("%d upstream calls for %d prompts; want at least one for each of %d jobs", f.upstream.Calls(), len(calls), len(jobs)+1)
	}
	t.Logf("%d upstream calls for %d jobs", f.upstream.Calls(), len(jobs)+1)
}
