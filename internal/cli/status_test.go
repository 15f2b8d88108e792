package cli_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/worker"
)

// TestStatus: against a fleet of three workers that answered a job and
// its cache hit, status shows the queue, each worker and the fleet's
// ratios, as text and as JSON.
func TestStatus(t *testing.T) {
	f := fleettest.New(t, fleettest.Options{})
	useNATS(t, f.NATS.ClientURL())
	ctx := fleettest.Context(t, 30*time.Second)
	for range 3 {
		f.StartWorker(func(c *worker.Config) { c.Manager.DefaultModel = testModel })
	}
	if _, err := f.Pub.Complete(ctx, userJob("default", "", "warm the cache")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Pub.Complete(ctx, userJob("default", "", "warm the cache")); err != nil { // a cache hit
		t.Fatal(err)
	}

	res := run(ctx, "", "status", "--json")
	if res.code != 0 {
		t.Fatalf("status --json: %v", res)
	}
	var st struct {
		Prefix  string
		Queue   struct{ Waiting, AckPending int }
		Workers []struct {
			Worker string
			Slots  map[string]struct{ Used, Total int }
			Totals struct{ Requests, CacheHits int }
		}
		Fleet struct {
			Workers       int
			CacheHitRatio float64 `json:"cache_hit_ratio"`
		}
	}
	if err := json.Unmarshal([]byte(res.out), &st); err != nil {
		t.Fatalf("%v in %s", err, res.out)
	}
	if st.Prefix != "chat" || st.Fleet.Workers != 3 || len(st.Workers) != 3 {
		t.Fatalf("status = %+v", st)
	}
	requests, hits := 0, 0
	for _, w := range st.Workers {
		if w.Slots["requests"].Total != 64 || w.Slots["llm"].Total != 16 {
			t.Errorf("%s slots = %+v", w.Worker, w.Slots)
		}
		requests += w.Totals.Requests
		hits += w.Totals.CacheHits
	}
	if requests != 2 || hits != 1 || st.Fleet.CacheHitRatio != 0.5 {
		t.Errorf("requests %d, cache hits %d, ratio %v", requests, hits, st.Fleet.CacheHitRatio)
	}

	res = run(ctx, "", "status")
	if res.code != 0 || !strings.Contains(res.out, "3 workers") || !strings.Contains(res.out, "cache hits 50.0%") ||
		!strings.Contains(res.out, "w1") || !strings.Contains(res.out, "0/64") {
		t.Errorf("status: %v\n%s", res, res.out)
	}
}

func TestStatusUsage(t *testing.T) {
	ctx := fleettest.Context(t, 10*time.Second)
	for _, args := range [][]string{{"status", "extra"}, {"status", "--interval", "0s"}, {"status", "--bogus"}} {
		if res := run(ctx, "", args...); res.code != 2 {
			t.Errorf("%v: %v", args, res)
		}
	}
}
