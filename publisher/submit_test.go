package publisher_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
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

// TestReadsWithoutTopology: before the streams and buckets exist, reading
// a reply's last event and cancelling fail at once, saying how to create
// them; nothing is looked up that a producer might not be allowed to.
func TestReadsWithoutTopology(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	ctx := fleettest.Context(t, 10*time.Second)
	_, found, err := f.Pub.LastEvent(ctx, "acme", "r1")
	if found || !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("LastEvent = found %v, %v; want ErrStreamNotFound", found, err)
	}
	cerr := f.Pub.Cancel(ctx, "acme", "r1")
	if !errors.Is(cerr, jetstream.ErrStreamNotFound) {
		t.Errorf("Cancel = %v, want ErrStreamNotFound", cerr)
	}
	for _, e := range []error{err, cerr} {
		if e == nil || !strings.Contains(e.Error(), "CHAT_REPLIES (run a worker or `chatfleet init`") {
			t.Errorf("%v does not name the stream and how to create it", e)
		}
	}
}

// TestCancelWithoutBucket: with the replies stream but no cancel bucket,
// Cancel names the bucket and how to create it.
func TestCancelWithoutBucket(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	ctx := fleettest.Context(t, 10*time.Second)
	ensureTopology(t, f)
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	if err := js.DeleteKeyValue(ctx, f.Topology.WithDefaults().Names.CancelBucket()); err != nil {
		t.Fatal(err)
	}
	err := f.Pub.Cancel(ctx, "acme", "r1")
	if !errors.Is(err, jetstream.ErrBucketNotFound) || !strings.Contains(err.Error(), "chat_cancels (run a worker or `chatfleet init`") {
		t.Errorf("Cancel = %v, want ErrBucketNotFound naming chat_cancels and how to create it", err)
	}
}

func TestAPIPrefixValidates(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	for _, bad := range []string{"", ".", "JS.*.API", "JS.>", "JS..API", "JS API"} {
		if _, err := publisher.New(natstest.Connect(t, f.NATS.ClientURL()), publisher.WithAPIPrefix(bad)); !errors.Is(err, publisher.ErrInvalidOption) {
			t.Errorf("WithAPIPrefix(%q): err = %v, want ErrInvalidOption", bad, err)
		}
	}
	if _, err := publisher.New(natstest.Connect(t, f.NATS.ClientURL()), publisher.WithAPIPrefix("JS.chat.API.")); err != nil {
		t.Errorf("WithAPIPrefix(JS.chat.API.): %v", err)
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
