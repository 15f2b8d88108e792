package topology

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// publishJobs publishes n jobs for tenant and returns the first error.
func publishJobs(ctx context.Context, js jetstream.JetStream, tenant string, n int) error {
	for range n {
		if _, err := js.Publish(ctx, "chat.jobs."+tenant, []byte(`{}`)); err != nil {
			return err
		}
	}
	return nil
}

// TestMaxQueuedPerTenant: the fleet's per-tenant cap is stored with the
// jobs stream and enforced by it per tenant subject: a tenant at its cap
// is refused, another tenant is not. A process with another cap is
// refused.
func TestMaxQueuedPerTenant(t *testing.T) {
	t.Parallel()
	js := setup(t)
	ctx := context.Background()
	top, err := Ensure(ctx, js, Config{MaxQueuedPerTenant: 3})
	if err != nil {
		t.Fatal(err)
	}
	cfg := top.Jobs.CachedInfo().Config
	if cfg.Metadata[MetadataMaxQueuedPerTenant] != "3" || cfg.MaxMsgsPerSubject != 3 || !cfg.DiscardNewPerSubject {
		t.Fatalf("jobs stream: metadata %v, max per subject %d, discard new per subject %v", cfg.Metadata, cfg.MaxMsgsPerSubject, cfg.DiscardNewPerSubject)
	}
	if err := publishJobs(ctx, js, "a", 3); err != nil {
		t.Fatal(err)
	}
	err = publishJobs(ctx, js, "a", 1)
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || !strings.Contains(apiErr.Description, "per subject") {
		t.Errorf("tenant a's 4th job: %v, want refused by the per-subject limit", err)
	}
	if err := publishJobs(ctx, js, "b", 1); err != nil {
		t.Errorf("tenant b refused while a is at its cap: %v", err)
	}
	if _, err := Ensure(ctx, js, Config{MaxQueuedPerTenant: 3}); err != nil {
		t.Errorf("same cap refused: %v", err)
	}
	_, err = Ensure(ctx, js, Config{})
	var mm *MismatchError
	if !errors.As(err, &mm) || len(mm.Fields) != 1 || mm.Fields[0] != (FieldDiff{"metadata." + MetadataMaxQueuedPerTenant, "3", "0"}) {
		t.Errorf("no cap against a stream with one: %v", err)
	}

	// A fleet without a cap stores "0" and sets no per-subject limit.
	js = setup(t)
	if top, err = Ensure(ctx, js, Config{}); err != nil {
		t.Fatal(err)
	}
	if cfg := top.Jobs.CachedInfo().Config; cfg.Metadata[MetadataMaxQueuedPerTenant] != "0" || cfg.MaxMsgsPerSubject > 0 {
		t.Errorf("no cap: metadata %v, max per subject %d", cfg.Metadata, cfg.MaxMsgsPerSubject)
	}
	if _, err := top.Tenants.Status(ctx); err != nil {
		t.Errorf("tenants bucket: %v", err)
	}
}

// TestMaxQueuedPerTenantMigration: a jobs stream created by a version
// without the per-tenant cap, holding jobs, gets it added by the first new
// process; the jobs and the rest of the configuration stay, an old
// process's check still accepts the stream, and a new one with another cap
// is refused. A cap some tenant's queue already exceeds is refused before
// anything changes: the server would delete that tenant's oldest jobs.
func TestMaxQueuedPerTenantMigration(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	oldStream := func(t *testing.T) (jetstream.JetStream, jetstream.StreamConfig) {
		js := setup(t)
		old := jobsStream(Config{}.WithDefaults())
		old.Metadata = map[string]string{MetadataLayout: LayoutQueues} // as versions before the fleet's stored settings created it (but migrated to queues)
		setMaxQueuedPerTenant(&old, 0)
		if _, err := js.CreateStream(ctx, old); err != nil {
			t.Fatal(err)
		}
		if err := publishJobs(ctx, js, "a", 4); err != nil {
			t.Fatal(err)
		}
		return js, old
	}

	js, old := oldStream(t)
	top, err := Ensure(ctx, js, Config{MaxQueuedPerTenant: 5})
	if err != nil {
		t.Fatalf("new process against an old stream: %v", err)
	}
	info, err := top.Jobs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c := info.Config; c.Metadata[MetadataMaxQueuedPerTenant] != "5" || c.MaxMsgsPerSubject != 5 || !c.DiscardNewPerSubject {
		t.Errorf("migrated stream: metadata %v, max per subject %d, discard new per subject %v", c.Metadata, c.MaxMsgsPerSubject, c.DiscardNewPerSubject)
	}
	if info.State.Msgs != 4 {
		t.Errorf("jobs after the migration: %d, want 4", info.State.Msgs)
	}
	if diffs := streamDiffs(info.Config, old); diffs != nil {
		t.Errorf("the migration changed more than the cap: %v", diffs)
	}
	if _, err := ensureStream(ctx, js, old); err != nil {
		t.Errorf("old process against the migrated stream: %v", err)
	}
	if _, err := Ensure(ctx, js, Config{MaxQueuedPerTenant: 5}); err != nil {
		t.Errorf("second new process: %v", err)
	}
	if _, err := Ensure(ctx, js, Config{MaxQueuedPerTenant: 6}); !errors.Is(err, ErrMismatch) {
		t.Errorf("new process with another cap: err = %v, want ErrMismatch", err)
	}
	if err := publishJobs(ctx, js, "a", 2); err == nil {
		t.Error("tenant a went past the migrated cap of 5")
	}

	js, _ = oldStream(t)
	_, err = Ensure(ctx, js, Config{MaxQueuedPerTenant: 3})
	if err == nil || !strings.Contains(err.Error(), "chat.jobs.a holds 4") {
		t.Fatalf("a cap below a tenant's queue: err = %v, want it refused naming the tenant", err)
	}
	s, err := js.Stream(ctx, "CHAT_JOBS")
	if err != nil {
		t.Fatal(err)
	}
	if c := s.CachedInfo(); c.State.Msgs != 4 || c.Config.MaxMsgsPerSubject > 0 || c.Config.Metadata[MetadataMaxQueuedPerTenant] != "" {
		t.Errorf("the refused migration changed the stream: %d jobs, max per subject %d, metadata %v",
			c.State.Msgs, c.Config.MaxMsgsPerSubject, c.Config.Metadata)
	}
}
