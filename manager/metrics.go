package manager

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/chatfleet/chatfleet/protocol"
)

// metrics are the manager's instruments. With the Prometheus exporter the
// names become chatfleet_jobs_total, chatfleet_time_to_first_token_seconds,
// and so on (see the README's operations section).
type metrics struct {
	jobs           metric.Int64Counter       // by outcome, role, code
	upstreamCalls  metric.Int64Counter       // streams opened
	upstreamErrors metric.Int64Counter       // by code
	tokens         metric.Int64Counter       // by kind: prompt, completion
	tokensSaved    metric.Int64Counter       // by: dedupe, cache
	ttft           metric.Float64Histogram   // arrival → first chunk, per request
	queueWait      metric.Float64Histogram   // arrival → pull
	processing     metric.Float64Histogram   // pull → terminal event
	inFlight       metric.Int64UpDownCounter // requests, by role (routing until known)
	takeovers      metric.Int64Counter
	leasesLost     metric.Int64Counter
	deadLetters    metric.Int64Counter
	panics         metric.Int64Counter
}

// latencyBuckets suit everything from a cache hit to a long generation.
var latencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

func newMetrics(mp metric.MeterProvider, m *Manager) (*metrics, error) {
	meter := mp.Meter("github.com/chatfleet/chatfleet/manager")
	var x metrics
	var errs []error
	counter := func(dst *metric.Int64Counter, name, desc string) {
		var err error
		*dst, err = meter.Int64Counter(name, metric.WithDescription(desc))
		errs = append(errs, err)
	}
	histogram := func(dst *metric.Float64Histogram, name, desc string) {
		var err error
		*dst, err = meter.Float64Histogram(name, metric.WithDescription(desc), metric.WithUnit("s"),
			metric.WithExplicitBucketBoundaries(latencyBuckets...))
		errs = append(errs, err)
	}
	counter(&x.jobs, "chatfleet.jobs", "Jobs handled, by outcome (done, error, cancelled, handed_back, superseded), role and error code.")
	counter(&x.upstreamCalls, "chatfleet.upstream.calls", "Upstream streams opened.")
	counter(&x.upstreamErrors, "chatfleet.upstream.errors", "Generations that failed at the upstream, by error code.")
	counter(&x.tokens, "chatfleet.tokens", "Tokens the upstream reported, by kind (prompt, completion).")
	counter(&x.tokensSaved, "chatfleet.tokens.saved", "Tokens not paid for because a request was served by dedupe or the cache.")
	histogram(&x.ttft, "chatfleet.time_to_first_token", "Time from a job's arrival in the queue to its first chunk.")
	histogram(&x.queueWait, "chatfleet.queue_wait", "Time a job waited in the queue.")
	histogram(&x.processing, "chatfleet.processing", "Time from pulling a job to its terminal event.")
	counter(&x.takeovers, "chatfleet.leader.takeovers", "Generations taken over from a leader that died.")
	counter(&x.leasesLost, "chatfleet.leader.leases_lost", "Leader leases lost while generating (fenced).")
	counter(&x.deadLetters, "chatfleet.dead_letters", "Jobs copied to the dead-letter stream.")
	counter(&x.panics, "chatfleet.panics", "Panics recovered while handling jobs.")
	var err error
	x.inFlight, err = meter.Int64UpDownCounter("chatfleet.requests.in_flight", metric.WithDescription("Requests on this worker, by role (routing until it is known)."))
	errs = append(errs, err)

	slotsUsed, err := meter.Int64ObservableGauge("chatfleet.slots.used", metric.WithDescription("Slots taken, by pool (requests, waiting, llm, followers)."))
	errs = append(errs, err)
	slotsTotal, err := meter.Int64ObservableGauge("chatfleet.slots.total", metric.WithDescription("Slots in each pool."))
	errs = append(errs, err)
	gens, err := meter.Int64ObservableGauge("chatfleet.generations.in_flight",
		metric.WithDescription("Unique generations this worker leads now: the autoscaling signal (followers and cache hits cost no upstream slot)."))
	errs = append(errs, err)
	waiting, err := meter.Int64ObservableGauge("chatfleet.queue.waiting",
		metric.WithDescription("Jobs in the queue no worker has pulled, every tenant and priority, as of the last maintenance scan; "+
			"only the worker that maintains the fleet reports it (take the max across workers): the queue signal for autoscaling."))
	errs = append(errs, err)
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for name, u := range m.slots.Usage() {
			pool := metric.WithAttributes(attribute.String("pool", name))
			o.ObserveInt64(slotsUsed, u.Used, pool)
			o.ObserveInt64(slotsTotal, u.Total, pool)
		}
		o.ObserveInt64(gens, m.stats.leading.Load())
		if m.maint != nil {
			if n, ok := m.maint.queueWaiting(); ok {
				o.ObserveInt64(waiting, n)
			}
		}
		return nil
	}, slotsUsed, slotsTotal, gens, waiting)
	errs = append(errs, err)
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	x.zero()
	return &x, nil
}

// zero makes every counter with a known set of series show 0 from the
// start, so dashboards and alerts see a zero, not an absent series.
func (x *metrics) zero() {
	ctx := context.Background()
	for _, c := range []metric.Int64Counter{x.upstreamCalls, x.takeovers, x.leasesLost, x.deadLetters, x.panics} {
		c.Add(ctx, 0)
	}
	for _, code := range []protocol.Code{protocol.CodeRateLimited, protocol.CodeUpstreamUnavailable, protocol.CodeUpstreamError, protocol.CodeTimeout} {
		x.upstreamErrors.Add(ctx, 0, attrs(attribute.String("code", string(code))))
	}
	for _, kind := range []metric.MeasurementOption{promptTokens, completionTokens} {
		x.tokens.Add(ctx, 0, kind)
	}
	for _, by := range []metric.MeasurementOption{savedByDedupe, savedByCache} {
		x.tokensSaved.Add(ctx, 0, by)
	}
}

func attrs(kv ...attribute.KeyValue) metric.MeasurementOption { return metric.WithAttributes(kv...) }

// Attribute sets on the per-job path are built once: hashing a new set on
// every measurement was a visible share of a worker's CPU.
var (
	roleSets    [len(roleNames)]metric.MeasurementOption
	outcomeSets sync.Map // jobKey → metric.MeasurementOption

	promptTokens     = attrSet(attribute.String("kind", "prompt"))
	completionTokens = attrSet(attribute.String("kind", "completion"))
	savedByDedupe    = attrSet(attribute.String("by", "dedupe"))
	savedByCache     = attrSet(attribute.String("by", "cache"))
)

func attrSet(kv ...attribute.KeyValue) metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(kv...))
}

func init() {
	for i, name := range roleNames {
		roleSets[i] = attrSet(attribute.String("role", name))
	}
}

// roleSet is the {role} set of a role label.
func roleSet(label string) metric.MeasurementOption { return roleSets[roleIndex(label)] }

type jobKey struct{ outcome, role, code string }

// outcomeSet is the {outcome} set of a settled job.
func outcomeSet(outcome string) metric.MeasurementOption {
	return cachedSet(jobKey{outcome: outcome}, attribute.String("outcome", outcome))
}

func cachedSet(k jobKey, kv ...attribute.KeyValue) metric.MeasurementOption {
	if o, ok := outcomeSets.Load(k); ok {
		return o.(metric.MeasurementOption)
	}
	o := attrSet(kv...)
	outcomeSets.Store(k, o)
	return o
}

// jobSet is the {outcome, role, code} set of a settled job.
func jobSet(outcome, role, code string) metric.MeasurementOption {
	// role is never empty here, so these keys never meet outcomeSet's.
	return cachedSet(jobKey{outcome, role, code},
		attribute.String("outcome", outcome), attribute.String("role", role), attribute.String("code", code))
}
