package worker_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/worker"
)

// TestScalingDemandAtTheFleetCap: with a fleet-wide cap of one stream and
// three generations, /metrics says two wait for the fleet's capacity
// (fleet_streams), and the scaling signal counts only the one streaming —
// more workers would not start the other two sooner.
func TestScalingDemandAtTheFleetCap(t *testing.T) {
	t.Parallel()
	stall, release := fleettest.Stalled()
	defer release()
	f, w := metricsFleet(t, "fleetcap-test", func(c *worker.Config) { c.Manager.FleetLimits.MaxStreams = 1 }, stall)
	ctx := fleettest.Context(t, 30*time.Second)
	for i := range 3 {
		r, err := f.Pub.Submit(ctx, userJob(fmt.Sprintf("capped %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Stop()
	}
	url := "http://" + w.HTTPAddr().String() + "/metrics"
	body := scrapeUntil(t, ctx, url, "two generations waiting for the fleet's streams", func(body string) bool {
		return strings.Contains(body, `chatfleet_jobs_waiting_fleet_capacity{reason="fleet_streams"} 2`)
	})
	for _, want := range []string{
		`chatfleet_generations_in_flight 3`,
		`chatfleet_scaling_demand 1`,
		`chatfleet_jobs_waiting_fleet_capacity{reason="upstream_backoff"} 0`,
		`chatfleet_slots_used{pool="parked"} 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
