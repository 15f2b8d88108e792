package gateway

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// metrics are the gateway's instruments: with the Prometheus exporter,
// chatfleet_gateway_requests_total, …_time_to_first_byte_seconds and
// …_open_streams. The tenant label takes only the tenants of configured
// keys (or the one tenant without keys), and "unauthenticated": its values
// are bounded by the key file.
type metrics struct {
	requests    metric.Int64Counter
	ttfb        metric.Float64Histogram
	openStreams metric.Int64UpDownCounter
}

func newMetrics(mp metric.MeterProvider) (*metrics, error) {
	meter := mp.Meter("github.com/chatfleet/chatfleet/gateway")
	var x metrics
	var err error
	if x.requests, err = meter.Int64Counter("chatfleet.gateway.requests", metric.WithDescription("Requests answered, by route, HTTP status and tenant.")); err != nil {
		return nil, err
	}
	if x.ttfb, err = meter.Float64Histogram("chatfleet.gateway.time_to_first_byte", metric.WithUnit("s"),
		metric.WithDescription("Request received → first byte of the answer (a stream's headers once a worker accepted the job)."),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)); err != nil {
		return nil, err
	}
	if x.openStreams, err = meter.Int64UpDownCounter("chatfleet.gateway.open_streams", metric.WithDescription("SSE streams open now.")); err != nil {
		return nil, err
	}
	return &x, nil
}

// recorder is a response writer that remembers the status, for the
// request's metrics.
type recorder struct {
	http.ResponseWriter
	g      *Gateway
	route  string
	start  time.Time
	status int
	tenant string
	ttfb   bool
}

// observed wraps a route's handler in the request's metrics and its
// server span, named after the route, continuing an incoming W3C
// traceparent.
func (g *Gateway) observed(h func(context.Context, *recorder, *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec := g.record(w, r, time.Now())
		defer rec.done()
		if !g.enter() {
			errStopping.write(rec)
			return
		}
		defer g.handlers.Done()
		ctx := propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := g.tracer.Start(ctx, r.Pattern, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		h(ctx, rec, r)
	}
}

func (g *Gateway) record(w http.ResponseWriter, r *http.Request, start time.Time) *recorder {
	return &recorder{ResponseWriter: w, g: g, route: r.Pattern, start: start, tenant: "unauthenticated"}
}

func (rec *recorder) WriteHeader(status int) {
	if rec.status == 0 {
		rec.status = status
	}
	rec.ResponseWriter.WriteHeader(status)
}

func (rec *recorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return rec.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (Flush).
func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

// firstByte records the time to the answer's first byte.
func (rec *recorder) firstByte() {
	if !rec.ttfb {
		rec.ttfb = true
		rec.g.metrics.ttfb.Record(context.Background(), time.Since(rec.start).Seconds())
	}
}

func (rec *recorder) done() {
	rec.g.metrics.requests.Add(context.Background(), 1, metric.WithAttributes(
		attribute.String("route", rec.route), attribute.String("status", strconv.Itoa(rec.status)), attribute.String("tenant", rec.tenant)))
}
