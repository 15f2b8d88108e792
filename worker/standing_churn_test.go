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

// TestStandingPullRenewedOnlyAtExpiry: a worker whose standing pull holds
// its last free request slot renews that pull when the server ends it, and
// its rescans (every 20ms here, far more often) do not cut it short for
// another: with one slot, one pull per expiry; with its other slot busy,
// two (the rescan finds the running job's queue counted as having a job
// until the job is acked, and pulls it once the standing pull's slot is
// back).
func TestStandingPullRenewedOnlyAtExpiry(t *testing.T) {
	t.Parallel()
	t.Run("one slot", func(t *testing.T) {
		t.Parallel()
		f := fleettest.New(t, fleettest.Options{})
		startRescanning(f, 1)
		submitAndCollect(t, f, userJob("first"))
		waitStanding(t, f)
		checkPullsPerExpiry(t, f, 1)
	})
	t.Run("other slots busy", func(t *testing.T) {
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
		checkPullsPerExpiry(t, f, 2)
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

// checkPullsPerExpiry counts the pull requests the fleet's worker sends
// while the server ends ten of its pulls at their expiry (a 408 status to
// the pull's inbox): at most perExpiry each, and one more in flight at
// either end.
func checkPullsPerExpiry(t *testing.T, f *fleettest.Fleet, perExpiry int64) {
	t.Helper()
	nc := natstest.Connect(t, f.NATS.ClientURL())
	var pulls, expired atomic.Int64
	if _, err := nc.Subscribe("$JS.API.CONSUMER.MSG.NEXT.>", func(*nats.Msg) { pulls.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Subscribe("_INBOX.>", func(m *nats.Msg) {
		if m.Header.Get("Status") == "408" {
			expired.Add(1)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	fleettest.Poll(t, fleettest.Context(t, 30*time.Second), "ten standing pulls to expire", func() bool { return expired.Load() >= 10 })
	if n, e := pulls.Load(), expired.Load(); n > perExpiry*e+2 {
		t.Errorf("%d pull requests while %d expired; want at most %d per expiry", n, e, perExpiry)
	}
}
