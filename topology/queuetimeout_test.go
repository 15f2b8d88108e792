package topology

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestQueueTimeoutStored: the fleet's queue timeout is stored with the jobs
// stream; a process configured with the same value is accepted, one with
// another value is refused, naming the setting.
func TestQueueTimeoutStored(t *testing.T) {
	t.Parallel()
	js := setup(t)
	ctx := context.Background()
	top, err := Ensure(ctx, js, Config{QueueTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got := top.Jobs.CachedInfo().Config.Metadata[MetadataQueueTimeout]; got != "2s" {
		t.Fatalf("stored queue timeout = %q, want 2s", got)
	}
	if _, err := Ensure(ctx, js, Config{QueueTimeout: 2 * time.Second}); err != nil {
		t.Fatalf("same queue timeout refused: %v", err)
	}
	_, err = Ensure(ctx, js, Config{}) // the default, 5m
	if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), `queue timeout (metadata chatfleet.queue_timeout) is "2s", want "5m0s"`) {
		t.Fatalf("err = %v, want a queue timeout mismatch", err)
	}

	js = setup(t)
	if top, err = Ensure(ctx, js, Config{QueueTimeout: -1}); err != nil {
		t.Fatal(err)
	}
	if got := top.Jobs.CachedInfo().Config.Metadata[MetadataQueueTimeout]; got != "0s" {
		t.Errorf("disabled queue timeout stored as %q, want 0s", got)
	}
}

// TestQueueTimeoutMigration: a jobs stream created by a version without the
// stored queue timeout, holding a job, gets it added by the first new
// worker; the job and the rest of the stream's configuration stay, an old
// worker's check still accepts the stream, and a new worker configured
// otherwise is refused.
func TestQueueTimeoutMigration(t *testing.T) {
	t.Parallel()
	js := setup(t)
	ctx := context.Background()
	old := jobsStream(Config{}.WithDefaults())
	old.Metadata = map[string]string{MetadataLayout: LayoutQueues} // as versions before the fleet queue timeout created it (but migrated to queues)
	if _, err := js.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "chat.jobs.default", []byte(`{"id":"queued"}`)); err != nil {
		t.Fatal(err)
	}

	top, err := Ensure(ctx, js, Config{QueueTimeout: time.Minute})
	if err != nil {
		t.Fatalf("new worker against an old stream: %v", err)
	}
	info, err := top.Jobs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Config.Metadata[MetadataQueueTimeout]; got != "1m0s" {
		t.Errorf("migrated queue timeout = %q, want 1m0s", got)
	}
	if info.State.Msgs != 1 {
		t.Errorf("jobs in the stream after the migration: %d, want 1", info.State.Msgs)
	}
	if diffs := streamDiffs(info.Config, old); diffs != nil {
		t.Errorf("the migration changed more than the metadata: %v", diffs)
	}
	// An old worker checks the stream with its own config, which has no
	// metadata: still accepted.
	if _, err := ensureStream(ctx, js, old); err != nil {
		t.Errorf("old worker against the migrated stream: %v", err)
	}
	if _, err := Ensure(ctx, js, Config{QueueTimeout: time.Minute}); err != nil {
		t.Errorf("second new worker: %v", err)
	}
	if _, err := Ensure(ctx, js, Config{QueueTimeout: 2 * time.Minute}); !errors.Is(err, ErrMismatch) {
		t.Errorf("new worker with another queue timeout: err = %v, want ErrMismatch", err)
	}
}

func TestParseQueueTimeout(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{{"5m0s", 5 * time.Minute, true}, {"0s", 0, true}, {"0", 0, true}, {"90s", 90 * time.Second, true},
		{"-1s", 0, false}, {"soon", 0, false}, {"", 0, false}} {
		got, err := parseQueueTimeout(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("parseQueueTimeout(%q) = %v, %v", tt.in, got, err)
		}
	}
}

// racingJS is a JetStream whose UpdateStream lets another worker's update
// land right after its own, before anything else happens.
type racingJS struct {
	jetstream.JetStream
	other func(ctx context.Context, js jetstream.JetStream)
}

func (r racingJS) UpdateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := r.JetStream.UpdateStream(ctx, cfg)
	if err == nil {
		r.other(ctx, r.JetStream)
	}
	return s, err
}

// TestQueueTimeoutMigrationRace: two new workers with different queue
// timeouts migrate an old stream at the same moment; UpdateStream is not
// compare-and-swap, so the later update wins. A worker whose update lost
// reads the stream back and refuses with the mismatch, rather than run
// with a value the fleet does not store.
func TestQueueTimeoutMigrationRace(t *testing.T) {
	t.Parallel()
	js := setup(t)
	ctx := context.Background()
	old := jobsStream(Config{}.WithDefaults())
	old.Metadata = map[string]string{MetadataLayout: LayoutQueues}
	if _, err := js.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	racing := racingJS{JetStream: js, other: func(ctx context.Context, js jetstream.JetStream) {
		cfg := old
		cfg.Metadata = map[string]string{MetadataLayout: LayoutQueues, MetadataQueueTimeout: "2m0s"} // the other worker's
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			t.Error(err)
		}
	}}
	s, err := js.Stream(ctx, old.Name)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ensureQueueTimeout(ctx, racing, s, time.Minute)
	if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), `is "2m0s", want "1m0s"`) {
		t.Fatalf("the worker whose update lost: err = %v, want the mismatch with the stored 2m0s", err)
	}
	// The winner is accepted.
	if _, err := Ensure(ctx, js, Config{QueueTimeout: 2 * time.Minute}); err != nil {
		t.Errorf("the worker whose update won: %v", err)
	}
}
