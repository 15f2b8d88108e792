package manager

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/topology"
)

func newTestManager(t *testing.T) *Manager {
	t.Helper()
	s := natstest.RunServer(t)
	nc, js := natstest.JetStream(t, s.ClientURL())
	top, err := topology.Ensure(context.Background(), js, topology.Config{})
	if err != nil {
		t.Fatal(err)
	}
	up, err := llm.New(llm.Config{BaseURL: "http://127.0.0.1:1/v1"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{WorkerID: "janitor-test"}, nc, js, top, up)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// fakeRequest registers a request with a deadline and no goroutine: what a
// stuck request looks like from the outside.
func fakeRequest(m *Manager, id string, deadline time.Time) (*request, context.Context) {
	ctx, cancel := context.WithCancelCause(context.Background())
	r := &request{m: m, job: &protocol.Job{ID: id, Tenant: "t"}, reqKey: "t." + id, deadline: deadline, cancel: cancel, ctx: ctx}
	m.requests.add(r)
	return r, ctx
}

func TestJanitorSweep(t *testing.T) {
	t.Parallel()
	m := newTestManager(t)
	now := time.Now()
	_, onTime := fakeRequest(m, "on-time", now.Add(time.Minute))
	_, overdue := fakeRequest(m, "overdue", now.Add(-2*m.cfg.JanitorInterval))
	fakeRequest(m, "stuck", now.Add(-m.ackWait()-11*m.cfg.JanitorInterval))
	m.cancels.add("t.old", now.Add(-2*m.topo.Config.CancelTTL))
	m.cancels.add("t.new", now)

	m.sweep(now)

	if onTime.Err() != nil || m.requests.get("t.on-time") == nil {
		t.Errorf("a request on time was touched")
	}
	if !errors.Is(context.Cause(overdue), errTimeout) || m.requests.get("t.overdue") == nil {
		t.Errorf("an overdue request must be cancelled with a timeout and stay registered until it ends")
	}
	if m.requests.get("t.stuck") != nil || m.Stats().Purged != 1 {
		t.Errorf("a stuck request must be purged (purged = %d)", m.Stats().Purged)
	}
	if m.cancels.has("t.old") || !m.cancels.has("t.new") {
		t.Errorf("cancels: old kept %v, new kept %v", m.cancels.has("t.old"), m.cancels.has("t.new"))
	}
}

// TestJanitorStopsWithManager: the janitor is one of the goroutines Stop
// waits for (goleak checks nothing is left).
func TestJanitorStopsWithManager(t *testing.T) {
	t.Parallel()
	m := newTestManager(t)
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.Stopped():
	default:
		t.Fatal("Stopped not closed after Stop")
	}
}
