package manager

import (
	"context"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/chatfleet/chatfleet/protocol"
)

// fleetReasons are the reasons a generation waits for the fleet's
// capacity, as the chatfleet_jobs_waiting_fleet_capacity gauge labels them.
var fleetReasons = [...]string{protocol.ReasonFleetStreams, protocol.ReasonFleetRPM, protocol.ReasonFleetTPM, protocol.ReasonUpstreamBackoff}

// heldBack counts this worker's generations held at a fleet-wide limit
// now: by the upstream's (by reason), and by their tenant's (in flight,
// tokens). More workers would not start them sooner, so the scaling signal
// leaves them out.
type heldBack struct {
	fleet  [len(fleetReasons)]atomic.Int64
	tenant atomic.Int64
}

// countFleetWaiting adds n to the generations waiting for reason.
func (m *Manager) countFleetWaiting(reason string, n int64) {
	for i, r := range fleetReasons {
		if r == reason {
			m.held.fleet[i].Add(n)
		}
	}
}

// fleetWaiting is the generations waiting for the fleet's capacity now.
func (m *Manager) fleetWaiting() int64 {
	var n int64
	for i := range fleetReasons {
		n += m.held.fleet[i].Load()
	}
	return n
}

// registerFleetMetrics adds the gauges of the fleet's capacity:
// chatfleet_jobs_waiting_fleet_capacity by reason, and
// chatfleet_scaling_demand, the autoscaling signal — generations that
// stream or wait for one of this worker's upstream slots, leaving out those
// held at a fleet-wide limit.
func registerFleetMetrics(mp metric.MeterProvider, m *Manager) error {
	meter := mp.Meter("github.com/chatfleet/chatfleet/manager")
	waiting, err := meter.Int64ObservableGauge("chatfleet.jobs.waiting_fleet_capacity",
		metric.WithDescription("Generations on this worker waiting for the upstream's fleet-wide capacity, by reason (fleet_streams, fleet_rpm, fleet_tpm, upstream_backoff)."))
	if err != nil {
		return err
	}
	demand, err := meter.Int64ObservableGauge("chatfleet.scaling.demand",
		metric.WithDescription("Generations this worker leads that more workers would serve sooner: those in flight, minus those held at a fleet-wide or tenant limit. The autoscaling signal."))
	if err != nil {
		return err
	}
	sets := make([]metric.ObserveOption, len(fleetReasons))
	for i, r := range fleetReasons {
		sets[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", r)))
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for i := range fleetReasons {
			o.ObserveInt64(waiting, m.held.fleet[i].Load(), sets[i])
		}
		o.ObserveInt64(demand, max(0, m.stats.leading.Load()-m.fleetWaiting()-m.held.tenant.Load()))
		return nil
	}, waiting, demand)
	return err
}
