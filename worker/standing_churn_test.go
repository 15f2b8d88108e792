package worker_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/worker"
)

// TestStandingPullStaysWhileIdle: a worker whose standing pull holds its
// last free request slot keeps that pull while no queue has jobs: its
// rescans (every FetchWait) neither stop it nor send another — with one
// slot, or with every other slot busy (not yet: see the skip).
func TestStandingPullStaysWhileIdle(t *testing.T) {
	t.Parallel()
	t.Run("one slot", func(t *testing.T) {
		t.Parallel()
		f := fleettest.New(t, fleettest.Options{})
		startRescanning(f, 1)
		submitAndCollect(t, f, userJob("first"))
		waitStanding(t, f)
		checkNoPullsWhileRescanning(t, f)
	})
	t.Run("other slots busy", func(t *testing.T) {
		t.Skip("known: a rescan marks the running job's queue as having jobs (the stream counts it until " +
			"it is acked), so each rescan stops the standing pull for a pull that finds nothing, and starts it again")
		t.Parallel()
		stall, release := fleettest.Stalled()
		defer release()
		f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{stall}})
		startRescanning(f, 2)
		r, err := f.Pub.Submit(fleettest.Context(t, 10*time.Second), userJob("stalled"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Stop)
		waitStanding(t, f)
		checkNoPullsWhileRescanning(t, f)
	})
}

// startRescanning starts a worker with slots request slots that reads the
// stream's queues every 20ms.
func startRescanning(f *fleettest.Fleet, slots int) {
	f.StartWorker(func(c *worker.Config) {
		withModel(c)
		c.Manager.MaxConcurrentRequests = slots
		c.FetchWait = 20 * time.Millisecond
	})
}

// checkNoPullsWhileRescanning counts the pull requests sent while the
// fleet's worker rescans ten times: none but, at most, one renewal.
func checkNoPullsWhileRescanning(t *testing.T, f *fleettest.Fleet) {
	t.Helper()
	nc := natstest.Connect(t, f.NATS.ClientURL())
	var pulls, scans atomic.Int64
	for subject, n := range map[string]*atomic.Int64{
		"$JS.API.CONSUMER.MSG.NEXT.>":                                         &pulls,
		"$JS.API.STREAM.INFO." + f.Topology.WithDefaults().Names.JobsStream(): &scans,
	} {
		if _, err := nc.Subscribe(subject, func(*nats.Msg) { n.Add(1) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	fleettest.Poll(t, fleettest.Context(t, 10*time.Second), "ten rescans", func() bool { return scans.Load() >= 10 })
	if n := pulls.Load(); n > 1 {
		t.Errorf("%d pull requests during ten idle rescans; want the standing pull to stay (at most one)", n)
	}
}
