package defaults

import (
	"log/slog"

	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Observers fills an unset logger with slog's default and unset tracer
// and meter providers with no-ops, so a component logs, traces and
// measures without nil checks.
func Observers(logger **slog.Logger, tp *trace.TracerProvider, mp *metric.MeterProvider) {
	if *logger == nil {
		*logger = slog.Default()
	}
	if *tp == nil {
		*tp = tracenoop.NewTracerProvider()
	}
	if *mp == nil {
		*mp = metricnoop.NewMeterProvider()
	}
}
