package tools_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/chatfleet/chatfleet/tools"
	"github.com/chatfleet/chatfleet/tools/devtools"
)

// The cost of one fleet tool call over NATS, as a leader pays it per
// call: go test -run XXX -bench . -benchtime 5000x ./tools/ (BENCHMARKS.md,
// "Fleet tools"). One call at a time on an in-process nats-server; the
// p50 and p99 of the calls are reported beside ns/op.

// BenchmarkRawRequest is the floor: a plain NATS request and its reply
// on the same server, with a handler that answers at once.
func BenchmarkRawRequest(b *testing.B) {
	_, nc := serve(b, tools.Config{}, devtools.Calculator())
	if _, err := nc.Subscribe("bench.echo", func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"id":"call_1","tenant":"default","arguments":"{\"expression\":\"17*23\"}"}`)
	measure(b, func(ctx context.Context) error {
		_, err := nc.RequestWithContext(ctx, "bench.echo", body)
		return err
	})
}

// BenchmarkCalculatorCall: devtools.Calculator through tools.Client, as a
// leader calls it without listeners to stream to.
func BenchmarkCalculatorCall(b *testing.B) {
	client, _ := serve(b, tools.Config{}, devtools.Calculator())
	measure(b, func(ctx context.Context) error {
		rep, err := client.Call(ctx, "calculator", tools.Request{ID: "call_1", Tenant: "default", Arguments: `{"expression":"17*23"}`}, nil)
		if err == nil && rep.Output != "391" {
			b.Fatalf("calculator(17*23) = %q", rep.Output)
		}
		return err
	})
}

// BenchmarkCalculatorCallStreamed: the same call with its output
// streamed (what a leader asks for): a subscription to the call's output
// subject and one chunk before the reply.
func BenchmarkCalculatorCallStreamed(b *testing.B) {
	client, _ := serve(b, tools.Config{}, devtools.Calculator())
	measure(b, func(ctx context.Context) error {
		chunks := 0
		_, err := client.Call(ctx, "calculator", tools.Request{ID: "call_1", Tenant: "default", Arguments: `{"expression":"17*23"}`}, func(tools.Chunk) { chunks++ })
		if err == nil && chunks != 1 {
			b.Fatalf("%d chunks, want 1", chunks)
		}
		return err
	})
}

// measure runs call b.N times, one at a time, and reports the p50 and
// p99 of their durations in microseconds.
func measure(b *testing.B, call func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for range 100 { // warm the connections and the server's subject cache
		if err := call(ctx); err != nil {
			b.Fatal(err)
		}
	}
	took := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if err := call(ctx); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(took)
	at := func(q float64) float64 { return float64(took[int(q*float64(len(took)-1))]) / float64(time.Microsecond) }
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
}
