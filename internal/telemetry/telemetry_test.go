package telemetry

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

// Without OTEL_* nothing is exported; with an endpoint, traces are.
func TestTracesOnlyWhenAsked(t *testing.T) {
	for _, tt := range []struct {
		env       map[string]string
		exporting bool
	}{
		{map[string]string{}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1/v1/traces"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_TRACES_EXPORTER": "none"}, false},
	} {
		for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"} {
			t.Setenv(k, tt.env[k])
		}
		tel, err := Setup(context.Background(), "svc", "i1")
		if err != nil {
			t.Fatal(err)
		}
		if tel.Exporting != tt.exporting {
			t.Errorf("%v: exporting = %v", tt.env, tel.Exporting)
		}
		_, span := tel.Tracer.Tracer("t").Start(context.Background(), "s")
		if span.SpanContext().IsValid() != tt.exporting {
			t.Errorf("%v: recording = %v", tt.env, span.SpanContext().IsValid())
		}
		span.End()
		ctx, cancel := context.WithTimeout(context.Background(), 0)
		_ = tel.Shutdown(ctx) // nothing listens at the endpoint; do not wait for it
		cancel()
	}
}

// The metrics handler serves this process's meters in Prometheus format.
func TestMetricsHandler(t *testing.T) {
	tel, err := Setup(context.Background(), "svc", "i1")
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	c, err := tel.Meter.Meter("t").Int64Counter("chatfleet.test.things")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(context.Background(), 3)
	rec := httptest.NewRecorder()
	tel.Metrics.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if !strings.Contains(string(body), "chatfleet_test_things_total 3") {
		t.Errorf("scrape:\n%s", body)
	}
}
