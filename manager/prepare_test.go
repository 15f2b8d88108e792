package manager_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/manager"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/tools"
	"github.com/chatfleet/chatfleet/worker"
)

// servePreparation runs fn as every tenant's preparation service.
func servePreparation(t *testing.T, f *fleettest.Fleet, fn tools.Preparer) {
	t.Helper()
	s, err := tools.ServePreparation(natstest.Connect(t, f.NATS.ClientURL()), tools.Config{}, fn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
}

func preparing(mode manager.PrepareMode) func(*worker.Config) {
	return func(c *worker.Config) { c.Manager.Prepare, c.Manager.PrepareTimeout = mode, 2*time.Second }
}

// TestPreparationOncePerKey: 100 identical jobs over two workers cost one
// preparation, and the upstream gets the prepared messages.
func TestPreparationOncePerKey(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	var calls atomic.Int64
	servePreparation(t, f, func(_ context.Context, job *protocol.Job) ([]protocol.Message, error) {
		calls.Add(1)
		return append([]protocol.Message{{Role: protocol.RoleSystem, Content: protocol.TextContent("context: the sky is green")}}, job.Messages...), nil
	})
	f.StartWorker(preparing(manager.PrepareRequired))
	f.StartWorker(preparing(manager.PrepareRequired))
	ctx := ctxFor(t, 2*time.Minute)
	for _, s := range submitMany(t, ctx, f.Pub, userJob("what colour is the sky?"), 100) {
		if r := s.wait(t); r.err != nil {
			t.Fatal(describe(r))
		}
	}
	if calls.Load() != 1 || f.LLM.Calls() != 1 {
		t.Errorf("%d preparations and %d upstream calls, want 1 and 1", calls.Load(), f.LLM.Calls())
	}
	if body := bodyOf(t, f.LLM.Requests()[0]); len(body.Messages) != 2 || !strings.Contains(body.Messages[0].Content.Text, "the sky is green") {
		t.Errorf("the upstream got %+v, not the prepared messages", body.Messages)
	}
}

// TestPreparationFailurePolicy: a failing preparation, or none at all,
// fails the job with prepare_failed when required and lets it go on
// unprepared when optional.
func TestPreparationFailurePolicy(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	f.StartWorker(preparing(manager.PrepareRequired))
	ctx := ctxFor(t, time.Minute)
	if r := submit(t, ctx, f.Pub, userJob("no service")).wait(t); jobErrorCode(r.err) != protocol.CodePrepareFailed {
		t.Errorf("no preparation service, required: %s", describe(r))
	}
	servePreparation(t, f, func(context.Context, *protocol.Job) ([]protocol.Message, error) {
		return nil, errors.New("the index is down")
	})
	r := submit(t, ctx, f.Pub, userJob("failing service")).wait(t)
	if jobErrorCode(r.err) != protocol.CodePrepareFailed || !strings.Contains(r.err.Error(), "the index is down") {
		t.Errorf("failing preparation, required: %s", describe(r))
	}
	if f.LLM.Calls() != 0 {
		t.Errorf("a job whose preparation failed reached the upstream")
	}

	optional := fleettest.New(t, fleettest.Options{})
	servePreparation(t, optional, func(context.Context, *protocol.Job) ([]protocol.Message, error) {
		return nil, errors.New("the index is down")
	})
	optional.StartWorker(preparing(manager.PrepareOptional))
	r = submit(t, ctx, optional.Pub, userJob("failing service")).wait(t)
	if r.err != nil || r.answer.Content == "" {
		t.Errorf("failing preparation, optional: %s", describe(r))
	}
	if body := bodyOf(t, optional.LLM.Requests()[0]); len(body.Messages) != 1 {
		t.Errorf("the unprepared job reached the upstream as %+v", body.Messages)
	}
}
