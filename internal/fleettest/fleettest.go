// Package fleettest runs a whole chatfleet on one test's behalf: a real
// in-process NATS server with JetStream, the OpenAI-compatible test
// upstream, any number of workers (each with its own NATS connection) and
// a publisher, all stopped when the test ends.
package fleettest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/natsserver"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/topology"
	"github.com/chatfleet/chatfleet/worker"
)

// Fleet is a running test fleet.
type Fleet struct {
	t        testing.TB
	NATS     *natsserver.Server
	LLM      *llmtest.Server
	Pub      *publisher.Publisher
	Topology topology.Config
	workers  atomic.Int32
	js       jetstream.JetStream // on the publisher's connection, for checks
}

// Options shape a fleet.
type Options struct {
	// LLM options for the test upstream.
	LLM []llmtest.Option
	// Topology for every worker. Defaults to topology's defaults.
	Topology topology.Config
	// Server, when set, adjusts the NATS server's options (limits, users
	// and permissions). Defaults to nil.
	Server func(*server.Options)
}

// New starts NATS, the test upstream and a publisher.
func New(t testing.TB, o Options) *Fleet {
	t.Helper()
	f := &Fleet{t: t, Topology: o.Topology}
	f.NATS = natstest.RunServerWith(t, o.Server)
	f.LLM = llmtest.New(o.LLM...)
	t.Cleanup(f.LLM.Close)
	nc := natstest.Connect(t, f.NATS.ClientURL())
	pub, err := publisher.New(nc, publisher.WithIdleProbe(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	f.Pub = pub
	if f.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	return f
}

// Stalled returns an upstream option under which every call stalls before
// its first token, and release, which ends the stalls. release is safe to
// call twice: a test defers it, so that it runs before the cleanups that
// stop the workers (which would wait for the stalled jobs).
func Stalled() (stall llmtest.Option, release func()) {
	ch := make(chan struct{})
	return llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		rep := llmtest.DefaultReply(r)
		rep.StallAfter, rep.Release = -1, ch
		return rep
	}), sync.OnceFunc(func() { close(ch) })
}

// Logger is the logger test workers use: silent unless CHATFLEET_TEST_LOG
// is set (logging through t.Log would race the test's end).
func Logger() *slog.Logger {
	if os.Getenv("CHATFLEET_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// WorkerConfig is the config StartWorker starts from.
func (f *Fleet) WorkerConfig() worker.Config {
	n := f.workers.Add(1)
	return worker.Config{
		ID:        fmt.Sprintf("w%d", n),
		Topology:  f.Topology,
		LLM:       llm.Config{BaseURL: f.LLM.URL(), APIKey: "test-key"},
		FetchWait: 250 * time.Millisecond,
		Logger:    Logger(),
	}
}

// StartWorker starts a worker on its own connection; change adjusts its
// config first (may be nil). The worker is stopped when the test ends.
func (f *Fleet) StartWorker(change func(*worker.Config)) *worker.Worker {
	f.t.Helper()
	cfg := f.WorkerConfig()
	if change != nil {
		change(&cfg)
	}
	w, err := worker.New(cfg, natstest.Connect(f.t, f.NATS.ClientURL()))
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Start(ctx); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { StopWorker(f.t, w) })
	return w
}

// StopWorker stops w gracefully, failing the test if it does not stop.
func StopWorker(t testing.TB, w *worker.Worker) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Jobs a test left running are handed back when the grace period
	// runs out: a graceful stop all the same.
	if err := w.Stop(ctx); err != nil && !onlyGraceExpired(err) {
		t.Errorf("stop worker %s: %v", w.ID(), err)
	}
}

// onlyGraceExpired reports an error of Worker.Stop that says no more than
// that the grace period ran out.
func onlyGraceExpired(err error) bool {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			if !errors.Is(e, worker.ErrGraceExpired) {
				return false
			}
		}
		return true
	}
	return errors.Is(err, worker.ErrGraceExpired)
}

// Context returns a context for one test step, bounded so a hang fails
// the test instead of the whole run.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// ConsumerInfo returns the state of the workers' queue consumers, summed
// (topology.QueueTotals).
func (f *Fleet) ConsumerInfo(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	return topology.QueueTotals(ctx, f.js, f.Topology.WithDefaults().Names)
}

// WaitConsumer polls the workers' queue consumers until ok holds for its state
// and returns that state; it fails the test, naming what was awaited, when
// ctx ends first. Consumer state has no change notification to wait on.
func (f *Fleet) WaitConsumer(t testing.TB, ctx context.Context, what string, ok func(*jetstream.ConsumerInfo) bool) *jetstream.ConsumerInfo {
	t.Helper()
	var info *jetstream.ConsumerInfo
	Poll(t, ctx, what, func() bool {
		var err error
		info, err = f.ConsumerInfo(ctx)
		return err == nil && ok(info)
	})
	return info
}

// Poll checks cond every 10 ms until it holds; it fails the test, naming
// what was awaited, when ctx ends first. Only for state that has nothing
// to wait on (a server's counters, a closed listener).
func Poll(t testing.TB, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: never happened (%v)", what, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
