package topology

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/subjects"
)

func setup(t *testing.T) jetstream.JetStream {
	t.Helper()
	s := natstest.RunServer(t)
	_, js := natstest.JetStream(t, s.ClientURL())
	return js
}

func TestEnsureIdempotent(t *testing.T) {
	t.Parallel()
	js := setup(t)
	ctx := context.Background()
	first, err := Ensure(ctx, js, Config{})
	if err != nil {
		t.Fatal(err)
	}
	second, err := Ensure(ctx, js, Config{})
	if err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	if first.Jobs.CachedInfo().Config.Name != "CHAT_JOBS" || second.Replies.CachedInfo().Config.Name != "CHAT_REPLIES" {
		t.Errorf("unexpected names")
	}
	info := first.Jobs.CachedInfo().Config
	if info.Retention != jetstream.WorkQueuePolicy || info.Discard != jetstream.DiscardNew || info.MaxMsgs != 10000 {
		t.Errorf("jobs stream config = %+v", info)
	}
	st, err := second.Inflight.Status(ctx)
	if err != nil || st.TTL() != 10*time.Second {
		t.Errorf("inflight TTL = %v, %v", st.TTL(), err)
	}
	q, err := first.Queue(ctx, "acme", "high")
	if err != nil {
		t.Fatal(err)
	}
	if c := q.CachedInfo().Config; c.AckPolicy != jetstream.AckExplicitPolicy || c.MaxDeliver != 5 || c.FilterSubject != "chat.pjobs.acme.high" ||
		c.Durable != "chat_q_acme_high" {
		t.Errorf("consumer config = %+v", c)
	}
}

func TestEnsureReportsMismatch(t *testing.T) {
	t.Parallel()
	js := setup(t)
	ctx := context.Background()
	top, err := Ensure(ctx, js, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := top.Queue(ctx, "acme", "normal"); err != nil {
		t.Fatal(err)
	}
	// Each case differs in exactly one setting, and the error names only
	// that one: not a default the server filled in (the replies stream's
	// duplicate window, which chatfleet leaves unset), not the others.
	tests := []struct {
		name  string
		cfg   Config
		want  []string
		field FieldDiff
	}{
		{"queue limit", Config{QueueLimit: 5}, []string{"stream CHAT_JOBS", "max_msgs is 10000, want 5"}, FieldDiff{"max_msgs", "10000", "5"}},
		{"reply age", Config{ReplyMaxAge: 5 * time.Minute}, []string{"stream CHAT_REPLIES", "max_age is 15m0s, want 5m0s"}, FieldDiff{"max_age", "15m0s", "5m0s"}},
		{"duplicate window", Config{DuplicateWindow: time.Minute}, []string{"stream CHAT_JOBS", "duplicate_window is 2m0s, want 1m0s"}, FieldDiff{"duplicate_window", "2m0s", "1m0s"}},
		{"ack wait", Config{AckWait: 5 * time.Second}, []string{"consumer chat_q_acme_normal", "ack_wait is 30s, want 5s"}, FieldDiff{"ack_wait", "30s", "5s"}},
		{"lease ttl", Config{LeaseTTL: 3 * time.Second}, []string{"bucket chat_inflight", "ttl is 10s, want 3s"}, FieldDiff{"ttl", "10s", "3s"}},
	}
	for _, tt := range tests {
		_, err := Ensure(ctx, js, tt.cfg)
		var mm *MismatchError
		if !errors.Is(err, ErrMismatch) || !errors.As(err, &mm) {
			t.Fatalf("%s: err = %v, want a *MismatchError", tt.name, err)
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", tt.name, err, w)
			}
		}
		if len(mm.Diffs) != 1 || len(mm.Fields) != 1 || mm.Fields[0] != tt.field {
			t.Errorf("%s: diffs %q, fields %+v; want only %+v", tt.name, mm.Diffs, mm.Fields, tt.field)
		}
	}
	// Nothing was overwritten.
	s, err := js.Stream(ctx, "CHAT_JOBS")
	if err != nil || s.CachedInfo().Config.MaxMsgs != 10000 {
		t.Errorf("jobs stream changed: %v", err)
	}
}

func TestEnsurePrefix(t *testing.T) {
	t.Parallel()
	js := setup(t)
	n, _ := subjects.New("acme.chat")
	top, err := Ensure(context.Background(), js, Config{Names: n})
	if err != nil {
		t.Fatal(err)
	}
	if got := top.Jobs.CachedInfo().Config.Subjects; len(got) != 2 || got[0] != "acme.chat.jobs.>" || got[1] != "acme.chat.pjobs.*.*" {
		t.Errorf("subjects = %v", got)
	}
	if top.Cache.Bucket() != "acme_chat_cache" {
		t.Errorf("cache bucket = %s", top.Cache.Bucket())
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, c := range []Config{{Replicas: 2}, {AckWait: time.Millisecond}, {LeaseTTL: time.Millisecond}, {DuplicateWindow: time.Hour}} {
		if err := c.WithDefaults().Validate(); err == nil {
			t.Errorf("%+v: want error", c)
		}
	}
}

// TestEnsureAddsMissingBucket: a fleet made before a bucket existed (the
// API keys bucket, the upstreams bucket) gets it from the first new
// process's Ensure, and what it already had is kept as it is.
func TestEnsureAddsMissingBucket(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		bucket string
		handle func(*Topology) jetstream.KeyValue
	}{
		{"chat_api_keys", func(top *Topology) jetstream.KeyValue { return top.APIKeys }},
		{"chat_upstreams", func(top *Topology) jetstream.KeyValue { return top.Upstreams }},
	} {
		t.Run(tc.bucket, func(t *testing.T) {
			t.Parallel()
			js := setup(t)
			ctx := context.Background()
			old, err := Ensure(ctx, js, Config{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := old.Cancels.PutString(ctx, "default.x", "cancel"); err != nil {
				t.Fatal(err)
			}
			if err := js.DeleteKeyValue(ctx, tc.bucket); err != nil {
				t.Fatal(err)
			}
			top, err := Ensure(ctx, js, Config{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tc.handle(top).Status(ctx); err != nil {
				t.Errorf("bucket %s: %v", tc.bucket, err)
			}
			if e, err := top.Cancels.Get(ctx, "default.x"); err != nil || string(e.Value()) != "cancel" {
				t.Errorf("the cancel bucket lost its entry: %v", err)
			}
		})
	}
}
