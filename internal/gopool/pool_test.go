package gopool

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestReusesAnIdleGoroutine(t *testing.T) {
	p := New(time.Minute)
	defer func() { _ = p.Close(context.Background()) }()
	first := make(chan struct{})
	p.Go(func() { close(first) })
	<-first
	// The first goroutine is idle (or about to be); the second task must
	// run, on it or on a new one, and Close must end them all.
	second := make(chan struct{})
	p.Go(func() { close(second) })
	<-second
}

func TestRunsTasksConcurrently(t *testing.T) {
	p := New(time.Minute)
	defer func() { _ = p.Close(context.Background()) }()
	const n = 50
	var started, release sync.WaitGroup
	started.Add(n)
	release.Add(1)
	for range n {
		p.Go(func() {
			started.Done()
			release.Wait()
		})
	}
	started.Wait() // would hang if Go ran tasks one after another
	release.Done()
}

func TestIdleGoroutinesEnd(t *testing.T) {
	p := New(time.Millisecond)
	done := make(chan struct{})
	p.Go(func() { close(done) })
	<-done
	ended := make(chan struct{})
	go func() { p.routines.Wait(); close(ended) }() // no Close: the idle timer alone ends it
	<-ended
	_ = p.Close(context.Background())
}

func TestCloseWaitsForBusyTasks(t *testing.T) {
	p := New(time.Minute)
	finished := false
	running, release := make(chan struct{}), make(chan struct{})
	p.Go(func() {
		close(running)
		<-release
		finished = true
	})
	<-running
	closed := make(chan struct{})
	go func() { _ = p.Close(context.Background()); close(closed) }()
	<-p.stop // Close has begun: from here it may only wait
	// Nothing signals "Close is still waiting"; give a wrong Close a
	// moment to return.
	select {
	case <-closed:
		t.Fatal("Close returned while a task was running")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	<-closed
	if !finished {
		t.Fatal("Close returned before the task finished")
	}
}

func TestGoAfterCloseRefuses(t *testing.T) {
	p := New(time.Minute)
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	_ = p.Close(context.Background()) // twice is fine
	if p.Go(func() { t.Error("a task ran after Close") }) {
		t.Fatal("Go after Close reported the task started")
	}
}

// TestCloseBoundedByContext: a task that never ends does not hold Close
// past its context.
func TestCloseBoundedByContext(t *testing.T) {
	p := New(time.Minute)
	release := make(chan struct{})
	p.Go(func() { <-release })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Close(ctx); err != context.Canceled {
		t.Fatalf("Close = %v, want context.Canceled", err)
	}
	close(release)
	_ = p.Close(context.Background())
}
