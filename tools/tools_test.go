package tools_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/subjects"
	"github.com/chatfleet/chatfleet/tools"
	"github.com/chatfleet/chatfleet/tools/devtools"
)

// serve starts a tool server on a fresh NATS and returns a client of it.
func serve(t testing.TB, cfg tools.Config, ts ...tools.Tool) (*tools.Client, *nats.Conn) {
	t.Helper()
	srv := natstest.RunServer(t)
	s, err := tools.Serve(natstest.Connect(t, srv.ClientURL()), cfg, ts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	nc := natstest.Connect(t, srv.ClientURL())
	names, _ := subjects.New(cmpOr(cfg.Prefix, subjects.DefaultPrefix))
	return tools.NewClient(nc, names), nc
}

// reached waits for a send on ch, or fails the test when ctx ends first.
func reached(t *testing.T, ctx context.Context, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-ctx.Done():
		t.Fatalf("%s: never happened (%v)", what, ctx.Err())
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// streamer writes n lines, one write each.
func streamer(n int) tools.Tool {
	return tools.Tool{Name: "lines", Description: "streams lines", Handler: func(_ context.Context, _ tools.Call, out *tools.Output) error {
		for i := range n {
			fmt.Fprintf(out, "line %d\n", i)
		}
		return nil
	}}
}

// TestDiscoverAndCall: the client finds the tools a server advertises, with
// their schemas, and a call returns the output.
func TestDiscoverAndCall(t *testing.T) {
	t.Parallel()
	client, _ := serve(t, tools.Config{}, devtools.All()...)
	ctx := fleettest.Context(t, 10*time.Second)
	known := client.Tools(ctx)
	calc, ok := known["calculator"]
	if !ok || len(known) != 2 || !calc.Idempotent || !strings.Contains(string(calc.Parameters), `"expression"`) || calc.Description == "" {
		t.Fatalf("discovered %+v", known)
	}
	r, err := client.Call(ctx, "calculator", tools.Request{ID: "c1", Arguments: `{"expression":"17*23"}`}, nil)
	if err != nil || r.Output != "391" {
		t.Fatalf("17*23: %+v %v", r, err)
	}
}

// TestDiscoveryIsPerFleet: another prefix's tools are not this fleet's.
func TestDiscoveryIsPerFleet(t *testing.T) {
	t.Parallel()
	_, nc := serve(t, tools.Config{Prefix: "other"}, devtools.Calculator())
	client := tools.NewClient(nc, subjects.Default())
	if known := client.Tools(fleettest.Context(t, 10*time.Second)); len(known) != 0 {
		t.Errorf("another fleet's tools discovered: %+v", known)
	}
}

// TestStreamedOutputInOrder: every write reaches the caller as a chunk, in
// order, before the reply, and the reply holds the whole output.
func TestStreamedOutputInOrder(t *testing.T) {
	t.Parallel()
	client, _ := serve(t, tools.Config{}, streamer(100))
	var got strings.Builder
	last := 0
	r, err := client.Call(fleettest.Context(t, 10*time.Second), "lines", tools.Request{ID: "c"}, func(c tools.Chunk) {
		if c.Seq != last+1 {
			t.Errorf("chunk %d after %d", c.Seq, last)
		}
		last = c.Seq
		got.WriteString(c.Text)
	})
	if err != nil {
		t.Fatal(err)
	}
	if last != 100 || got.String() != r.Output || !strings.HasSuffix(r.Output, "line 99\n") {
		t.Errorf("%d chunks, streamed %d bytes, reply %d bytes", last, got.Len(), len(r.Output))
	}
}

// TestFailures: bad arguments, a failing and a panicking tool, a tool past
// its timeout, a tool no server serves, and a busy server each give the
// caller a clear error, and the server keeps serving.
func TestFailures(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	slow := tools.Tool{Name: "slow", Handler: func(ctx context.Context, _ tools.Call, out *tools.Output) error {
		out.WriteString("partial")
		started <- struct{}{}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-release:
			return nil
		}
	}}
	fail := tools.Tool{Name: "fail", Handler: func(context.Context, tools.Call, *tools.Output) error { return errors.New("the database is down") }}
	stuck := tools.Tool{Name: "stuck", Handler: func(ctx context.Context, _ tools.Call, _ *tools.Output) error {
		<-ctx.Done()
		started <- struct{}{}
		return ctx.Err()
	}}
	boom := tools.Tool{Name: "boom", Handler: func(context.Context, tools.Call, *tools.Output) error { panic("boom") }}
	client, _ := serve(t, tools.Config{MaxConcurrent: 1}, devtools.Calculator(), slow, stuck, fail, boom)
	ctx := fleettest.Context(t, 10*time.Second)

	for name, want := range map[string]string{"calculator": "400", "fail": "500", "boom": "500"} {
		_, err := client.Call(ctx, name, tools.Request{Arguments: `{"expression":"1+"}`}, nil)
		var ce *tools.CallError
		if !errors.As(err, &ce) || ce.Code != want {
			t.Errorf("%s: %v, want code %s", name, err, want)
		}
	}
	if _, err := client.Call(ctx, "nothing", tools.Request{}, nil); !errors.Is(err, tools.ErrNoTool) {
		t.Errorf("no server: %v", err)
	}

	// The one slot is taken: the next call is answered busy at once.
	done := make(chan error, 1)
	go func() {
		r, err := client.Call(ctx, "slow", tools.Request{TimeoutMS: 60_000}, nil)
		if err == nil && r.Output != "partial" {
			err = fmt.Errorf("output %q", r.Output)
		}
		done <- err
	}()
	reached(t, ctx, started, "the slow tool called")
	var ce *tools.CallError
	if _, err := client.Call(ctx, "calculator", tools.Request{Arguments: `{"expression":"1"}`}, nil); !errors.As(err, &ce) || ce.Code != "503" {
		t.Errorf("busy: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Error(err)
	}

	// The caller's timeout reaches the tool: it stops (the caller gives up
	// at the same moment, or reads the tool's failure first).
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := client.Call(short, "stuck", tools.Request{}, nil); !errors.Is(err, context.DeadlineExceeded) && !errors.As(err, &ce) {
		t.Errorf("timeout: %v", err)
	}
	reached(t, ctx, started, "the stuck tool's context ended")
	fleettest.Poll(t, ctx, "the slow call gave its slot back", func() bool {
		r, err := client.Call(ctx, "calculator", tools.Request{Arguments: `{"expression":"2^10"}`}, nil)
		return err == nil && r.Output == "1024"
	})
}

// TestOutputLimit: output past the caller's limit is cut on a character
// boundary and the reply says so.
func TestOutputLimit(t *testing.T) {
	t.Parallel()
	client, _ := serve(t, tools.Config{}, tools.Tool{Name: "big", Handler: func(_ context.Context, _ tools.Call, out *tools.Output) error {
		for range 100 {
			out.WriteString("ééééé")
		}
		return nil
	}})
	r, err := client.Call(fleettest.Context(t, 10*time.Second), "big", tools.Request{MaxOutputBytes: 15}, nil)
	if err != nil || !r.Truncated || r.Output != strings.Repeat("é", 7) {
		t.Errorf("%+v %v", r, err)
	}
}

// TestServeRefusesBadTools: a name the model or a subject cannot carry, or
// a schema that is not JSON, is refused before anything is registered.
func TestServeRefusesBadTools(t *testing.T) {
	t.Parallel()
	nc := natstest.Connect(t, natstest.RunServer(t).ClientURL())
	h := func(context.Context, tools.Call, *tools.Output) error { return nil }
	for _, tool := range []tools.Tool{
		{Name: "a.b", Handler: h},
		{Name: strings.Repeat("x", 65), Handler: h},
		{Name: "ok", Parameters: []byte("{"), Handler: h},
		{Name: "nohandler"},
	} {
		if s, err := tools.Serve(nc, tools.Config{}, tool); err == nil {
			s.Stop(context.Background())
			t.Errorf("%q served", tool.Name)
		}
	}
}

// TestCancelledLookupKeepsDiscovery: a job cancelled while the client asks
// the tool servers does not leave its empty, cut-short discovery for every
// later job (which would then see no tool, or a not-idempotent tool as
// absent).
func TestCancelledLookupKeepsDiscovery(t *testing.T) {
	t.Parallel()
	client, _ := serve(t, tools.Config{}, devtools.Calculator())
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	client.Lookup(cancelled, "calculator")
	if _, ok := client.Tools(fleettest.Context(t, 10*time.Second))["calculator"]; !ok {
		t.Error("the calculator is not found after a cancelled lookup")
	}
}

// TestOutputOnlyOnToolOutputSubjects: a caller naming any other subject
// for the output (a job's, say) gets bad arguments, and nothing is
// published there.
func TestOutputOnlyOnToolOutputSubjects(t *testing.T) {
	t.Parallel()
	client, nc := serve(t, tools.Config{}, streamer(3))
	victim := subjects.Default().Jobs("acme")
	sub, err := nc.SubscribeSync(victim)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	_, err = client.Call(fleettest.Context(t, 10*time.Second), "lines", tools.Request{ID: "c", Output: victim}, nil)
	var ce *tools.CallError
	if !errors.As(err, &ce) || ce.Code != "400" {
		t.Errorf("output on %s: %v, want code 400", victim, err)
	}
	if n, _, _ := sub.Pending(); n != 0 {
		t.Errorf("%d messages published on %s", n, victim)
	}
}
