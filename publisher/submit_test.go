package publisher_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/topology"
)

// TestSubmitWithoutTopology: before any worker or `chatfleet init` has
// created the streams, Submit fails with ErrNoStream and says how to
// create them.
func TestSubmitWithoutTopology(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	ctx := fleettest.Context(t, 10*time.Second)
	_, err := f.Pub.Submit(ctx, userJob("anyone there?"))
	if !errors.Is(err, publisher.ErrNoStream) {
		t.Fatalf("err = %v, want ErrNoStream", err)
	}
	for _, want := range []string{"CHAT_JOBS", "chat.jobs.default", "run a worker or `chatfleet init`"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
}

// TestSubmitOverTenantCap: the jobs stream's per-tenant cap refuses a
// tenant's job beyond it with a quota_exceeded JobError naming the limit;
// another tenant still submits, and a full queue is still ErrQueueFull.
func TestSubmitOverTenantCap(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{Topology: topology.Config{MaxQueuedPerTenant: 2, QueueLimit: 3}})
	ensureTopology(t, f)
	ctx := fleettest.Context(t, 10*time.Second)
	submit := func(tenant string) error {
		job := userJob("queued")
		job.Tenant = tenant
		r, err := f.Pub.Submit(ctx, job)
		if err == nil {
			r.Stop()
		}
		return err
	}
	for i := range 2 {
		if err := submit("acme"); err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
	}
	err := submit("acme")
	var jerr *publisher.JobError
	if !errors.Is(err, publisher.ErrQuotaExceeded) || !errors.As(err, &jerr) || jerr.Code() != protocol.CodeQuotaExceeded ||
		jerr.Err.Limit != protocol.LimitMaxQueued || errors.Is(err, publisher.ErrQueueFull) {
		t.Fatalf("acme's third job: %v, want quota_exceeded for max_queued", err)
	}
	if err := submit("other"); err != nil {
		t.Fatalf("another tenant: %v", err)
	}
	if err := submit("third"); !errors.Is(err, publisher.ErrQueueFull) {
		t.Fatalf("the whole queue full: %v, want ErrQueueFull", err)
	}
}
