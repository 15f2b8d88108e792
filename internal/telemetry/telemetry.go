// Package telemetry sets up OpenTelemetry for a chatfleet process: traces
// exported over OTLP when the standard OTEL_* variables ask for it (and
// nowhere otherwise), and metrics served in the Prometheus format.
package telemetry

import (
	"context"
	"errors"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	promexporter "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Telemetry holds a process's tracer and meter providers and its metrics
// handler.
type Telemetry struct {
	Tracer  trace.TracerProvider
	Meter   metric.MeterProvider
	Metrics http.Handler // the Prometheus scrape endpoint
	// Exporting reports whether traces are exported (OTEL_* configured).
	Exporting bool

	shutdown []func(context.Context) error
}

// Setup creates the providers for a service instance. Traces go over OTLP
// (HTTP/protobuf, configured by OTEL_EXPORTER_OTLP_* as the OTel
// specification defines) when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set and OTEL_TRACES_EXPORTER is not
// "none"; otherwise nothing is recorded.
func Setup(ctx context.Context, service, instance string) (*Telemetry, error) {
	res := resource.NewSchemaless(
		attribute.String("service.name", service),
		attribute.String("service.instance.id", instance),
	)
	t := &Telemetry{}

	registry := prometheus.NewRegistry()
	exporter, err := promexporter.New(promexporter.WithRegisterer(registry), promexporter.WithoutScopeInfo())
	if err != nil {
		return nil, err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter), sdkmetric.WithResource(res))
	t.Meter, t.Metrics = mp, promhttp.HandlerFor(registry, promhttp.HandlerOpts{})
	t.shutdown = append(t.shutdown, mp.Shutdown)

	if exportTraces() {
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			_ = mp.Shutdown(ctx)
			return nil, err
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
		t.Tracer, t.Exporting = tp, true
		t.shutdown = append(t.shutdown, tp.Shutdown)
	} else {
		t.Tracer = tracenoop.NewTracerProvider()
	}
	return t, nil
}

func exportTraces() bool {
	if os.Getenv("OTEL_TRACES_EXPORTER") == "none" {
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Shutdown flushes and stops the providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range t.shutdown {
		errs = append(errs, f(ctx))
	}
	return errors.Join(errs...)
}
