package cli_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/topology"
)

// TestInit: before any worker, a producer is told to run one or
// `chatfleet init`; init creates every stream, the consumer and the
// buckets (of the configured prefix), says so and exits; it can run again;
// after it a job is accepted and waits in the queue.
func TestInit(t *testing.T) {
	f := fleettest.New(t, fleettest.Options{}) // NATS only
	useNATS(t, f.NATS.ClientURL())
	t.Setenv("CHATFLEET_PREFIX", "acme.chat")
	ctx := fleettest.Context(t, 30*time.Second)

	for _, args := range [][]string{{"ask", "--tenant", "t1", "hello"}, {"status"}, {"dlq", "ls"}} {
		res := run(ctx, "", args...)
		if res.code != 1 || !strings.Contains(res.err, "run a worker or `chatfleet init`") {
			t.Errorf("%v before init: %v; want exit 1 and how to create the topology", args, res)
		}
	}
	var res result
	for range 2 { // the second run checks what the first created
		res = run(ctx, "", "init")
		if res.code != 0 || res.err != "" {
			t.Fatalf("init: %v", res)
		}
		for _, name := range []string{"prefix acme.chat", "ACME_CHAT_JOBS", "ACME_CHAT_REPLIES", "ACME_CHAT_DLQ",
			"acme_chat_q_", "acme_chat_inflight", "acme_chat_cache", "acme_chat_cancels", "acme_chat_api_keys", "acme_chat_tenants"} {
			if !strings.Contains(res.out, name) {
				t.Errorf("init output does not name %s: %q", name, res.out)
			}
		}
	}
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	for _, s := range []string{"ACME_CHAT_JOBS", "ACME_CHAT_REPLIES", "ACME_CHAT_DLQ", "KV_acme_chat_inflight", "KV_acme_chat_cache", "KV_acme_chat_cancels", "KV_acme_chat_api_keys", "KV_acme_chat_tenants"} {
		if _, err := js.Stream(ctx, s); err != nil {
			t.Errorf("stream %s: %v", s, err)
		}
	}

	// A producer before any worker: the job is stored and waits.
	res = run(ctx, "", "ask", "--tenant", "t1", "--timeout", "1s", "hello")
	if res.code != 1 || strings.Contains(res.err, "init") {
		t.Errorf("ask after init, no worker: %v; want it to wait for an answer until --timeout", res)
	}
	if res := run(ctx, "", "status", "--wait", "100ms"); res.code != 0 || !strings.Contains(res.out, "1 waiting") {
		t.Errorf("status after ask: %v", res)
	}
}

func TestInitUsage(t *testing.T) {
	useNATS(t, "nats://127.0.0.1:1")
	res := run(fleettest.Context(t, 10*time.Second), "", "init", "extra")
	if res.code != 2 || !strings.Contains(res.err, "takes no arguments") {
		t.Errorf("init extra: %v; want exit 2", res)
	}
}

// TestInitMismatch: init against a topology created with other settings
// fails naming only the real difference, the variable behind it and how
// to resolve it; nothing is changed.
func TestInitMismatch(t *testing.T) {
	f := fleettest.New(t, fleettest.Options{})
	useNATS(t, f.NATS.ClientURL())
	ctx := fleettest.Context(t, 30*time.Second)
	if res := run(ctx, "", "init"); res.code != 0 {
		t.Fatalf("init: %v", res)
	}
	t.Setenv("CHATFLEET_REPLY_MAX_AGE", "5m")
	res := run(ctx, "", "init")
	if res.code != 1 {
		t.Fatalf("init with another reply age: %v; want exit 1", res)
	}
	for _, want := range []string{"stream CHAT_REPLIES", "max_age is 15m0s, want 5m0s", "CHATFLEET_REPLY_MAX_AGE=15m0s"} {
		if !strings.Contains(res.err, want) {
			t.Errorf("stderr does not say %q:\n%s", want, res.err)
		}
	}
	if strings.Contains(res.err, "duplicate_window") {
		t.Errorf("stderr names a difference the user did not make:\n%s", res.err)
	}
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	if s, err := js.Stream(ctx, "CHAT_REPLIES"); err != nil || s.CachedInfo().Config.MaxAge != 15*time.Minute {
		t.Errorf("the replies stream was changed: %v", err)
	}
}

// TestInitMigrate: a fleet of the layout before priorities is refused by
// init, naming init --migrate; --dry-run shows the steps and changes
// nothing; --migrate applies them (the shared consumer goes, the stream
// gains the priority subjects, its queued job stays); a second run has
// nothing to do.
func TestInitMigrate(t *testing.T) {
	f := fleettest.New(t, fleettest.Options{})
	useNATS(t, f.NATS.ClientURL())
	ctx := fleettest.Context(t, 30*time.Second)
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	s, err := js.CreateStream(ctx, topology.LegacyJobsStream(topology.Config{}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateConsumer(ctx, "CHAT_JOBS", topology.LegacyWorkersConsumer(topology.Config{})); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "chat.jobs.t1", []byte(`{"id":"queued"}`)); err != nil {
		t.Fatal(err)
	}
	if res := run(ctx, "", "init"); res.code != 1 || !strings.Contains(res.err, "chatfleet init --migrate") {
		t.Errorf("init on the older layout: %v; want a refusal naming init --migrate", res)
	}
	res := run(ctx, "", "init", "--migrate", "--dry-run")
	if res.code != 0 || !strings.Contains(res.out, "delete consumer chat_workers") || !strings.Contains(res.out, "chat.pjobs.*.*") {
		t.Errorf("dry run: %v", res)
	}
	if _, err := js.Consumer(ctx, "CHAT_JOBS", "chat_workers"); err != nil {
		t.Errorf("the dry run changed the consumer: %v", err)
	}
	if res := run(ctx, "", "init", "--migrate"); res.code != 0 || !strings.Contains(res.out, "migration done") || !strings.Contains(res.out, "topology ready") {
		t.Errorf("migrate: %v", res)
	}
	if _, err := js.Consumer(ctx, "CHAT_JOBS", "chat_workers"); err == nil {
		t.Error("the shared consumer is still there")
	}
	info, err := s.Info(ctx)
	if err != nil || info.State.Msgs != 1 || info.Config.Metadata[topology.MetadataLayout] != topology.LayoutQueues {
		t.Errorf("after the migration: %v msgs, metadata %v (%v); want the queued job kept and the layout stored", info.State.Msgs, info.Config.Metadata, err)
	}
	if res := run(ctx, "", "init", "--migrate"); res.code != 0 || !strings.Contains(res.out, "nothing to change") {
		t.Errorf("second migrate: %v", res)
	}
}
