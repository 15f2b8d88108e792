package manager_test

import (
	"errors"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
)

// TestSIGTERMDrains: a worker process that gets SIGTERM stops pulling and
// lets its running job finish within the grace period; the job ends done
// on that worker (no reset), and the process exits 0.
func TestSIGTERMDrains(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	f := fleettest.New(t, fleettest.Options{LLM: midStream(release)})
	child, logs := startChildWorker(t, f, "draining", "CHATFLEET_SHUTDOWN_GRACE=30s")
	ctx := ctxFor(t, time.Minute)
	r, err := f.Pub.Submit(ctx, userJob("finish me first"))
	if err != nil {
		t.Fatal(err)
	}
	w := watch(ctx, r)
	<-w.firstChunk
	if err := child.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, "shutting down")
	close(release) // the job may finish now, within the grace period
	<-w.done
	if w.err != nil || w.answer.Resets != 0 || w.meta.Worker != "draining" || w.answer.Content != llmtest.Answer(f.LLM.Requests()[0]) {
		t.Errorf("drained job: err %v, resets %d, meta %+v, content %q", w.err, w.answer.Resets, w.meta, w.answer.Content)
	}
	if err := child.Wait(); err != nil {
		t.Errorf("worker exit: %v\n%s", err, logs.String())
	}
}

// TestSIGTERMHandsBack: a job still running when the grace period ends is
// handed back at once and finished by another worker (after a reset); the
// process exits.
func TestSIGTERMHandsBack(t *testing.T) {
	t.Parallel()
	stall := make(chan struct{})
	defer close(stall)
	f := fleettest.New(t, fleettest.Options{LLM: midStream(stall)})
	child, _ := startChildWorker(t, f, "impatient", "CHATFLEET_SHUTDOWN_GRACE=200ms")
	ctx := ctxFor(t, time.Minute)
	r, err := f.Pub.Submit(ctx, userJob("hand me back"))
	if err != nil {
		t.Fatal(err)
	}
	w := watch(ctx, r)
	<-w.firstChunk
	f.StartWorker(capacity(1)) // idle until the job comes back
	if err := child.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-w.done
	if w.err != nil || w.answer.Resets != 1 || w.answer.Content != llmtest.Answer(f.LLM.Requests()[1]) {
		t.Errorf("handed-back job: err %v, resets %d, content %q", w.err, w.answer.Resets, w.answer.Content)
	}
	// The grace period ran out: reported as an error, in the exit code.
	var exit *exec.ExitError
	if err := child.Wait(); !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("worker exit: %v, want exit code 1", err)
	}
	if f.LLM.Calls() != 2 {
		t.Errorf("upstream calls = %d, want 2", f.LLM.Calls())
	}
}

// waitLog waits until the child's logs contain s.
func waitLog(t *testing.T, logs *syncBuffer, s string) {
	t.Helper()
	if err := logs.waitFor(ctxFor(t, 30*time.Second), s); err != nil {
		t.Fatalf("log line %q never came (%v):\n%s", s, err, logs.String())
	}
}
