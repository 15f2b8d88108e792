package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/cli"
	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/worker"
)

// testModel is the default model of the fleet's workers.
const testModel = "test-model"

// syncBuffer is an io.Writer a command may write from its goroutines while
// the test reads it; WaitFor blocks until a text appears.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{changed: make(chan struct{})} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	close(b.changed)
	b.changed = make(chan struct{})
	return n, err
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WaitFor blocks until the buffer contains s, or fails the test when ctx
// ends first.
func (b *syncBuffer) WaitFor(t *testing.T, ctx context.Context, s string) {
	t.Helper()
	for {
		b.mu.Lock()
		ok, ch := strings.Contains(b.buf.String(), s), b.changed
		b.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("%q never appeared: %v; output so far:\n%s", s, ctx.Err(), b.String())
		}
	}
}

// result is how a command ended.
type result struct {
	code     int
	out, err string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.err)
}

// run runs a command to its end with stdin as its input.
func run(ctx context.Context, stdin string, args ...string) result {
	var out, errb bytes.Buffer
	code := cli.Run(ctx, args, cli.IO{In: strings.NewReader(stdin), Out: &out, Err: &errb})
	return result{code: code, out: out.String(), err: errb.String()}
}

// running is a command running in a goroutine the test owns: the test
// must see it end (wait) before it ends itself.
type running struct {
	out, err *syncBuffer
	exited   chan struct{} // closed when Run has returned
	code     int           // Run's result, once exited is closed
}

// start runs a command in the background with empty stdin.
func start(ctx context.Context, args ...string) *running {
	r := &running{out: newSyncBuffer(), err: newSyncBuffer(), exited: make(chan struct{})}
	go func() {
		defer close(r.exited)
		r.code = cli.Run(ctx, args, cli.IO{In: strings.NewReader(""), Out: r.out, Err: r.err})
	}()
	return r
}

// wait returns the command's result, failing the test if it has not ended
// within d (it would then be a hang, not slowness).
func (r *running) wait(t *testing.T, d time.Duration) result {
	t.Helper()
	select {
	case <-r.exited:
		return result{code: r.code, out: r.out.String(), err: r.err.String()}
	case <-time.After(d):
		t.Fatalf("command still running after %s; stderr so far:\n%s", d, r.err.String())
		return result{}
	}
}

// waitErr blocks until the command's stderr contains s; it fails the test
// when the command ends first or ctx does.
func (r *running) waitErr(t *testing.T, ctx context.Context, s string) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // ends with this call: cancel or the command's end
		select {
		case <-r.exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	r.err.WaitFor(t, ctx, s)
}

// newFleet starts NATS, the test upstream (with opts) and one worker whose
// default model is testModel, and points the CLI at that NATS.
func newFleet(t *testing.T, change func(*worker.Config), opts ...llmtest.Option) *fleettest.Fleet {
	t.Helper()
	f := fleettest.New(t, fleettest.Options{LLM: opts})
	f.StartWorker(func(c *worker.Config) {
		c.Manager.DefaultModel = testModel
		if change != nil {
			change(c)
		}
	})
	useNATS(t, f.NATS.ClientURL())
	return f
}

// useNATS points the CLI's clients at url with the default prefix.
func useNATS(t *testing.T, url string) {
	t.Setenv("CHATFLEET_NATS_URL", url)
	t.Setenv("CHATFLEET_PREFIX", "chat")
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// endToEnd skips a test that runs all of `chatfleet dev` (NATS, the
// topology, a worker, the simulated model) under go test -short.
func endToEnd(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs chatfleet dev end to end: skipped under -short")
	}
}
