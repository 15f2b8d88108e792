package config

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/internal/topology"
)

// TestExplainTopology: a worker configured unlike the existing topology
// is told which variable to set to what, for real differences only.
func TestExplainTopology(t *testing.T) {
	t.Parallel()
	s := natstest.RunServer(t)
	_, js := natstest.JetStream(t, s.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := Env{Prefix: "chat", QueueLimit: 10000, DuplicateWindow: 2 * time.Minute, ReplyMaxAge: 15 * time.Minute,
		AckWait: 30 * time.Second, MaxDeliver: 5, LeaseTTL: 10 * time.Second, CacheTTL: 24 * time.Hour, MaxJobBytes: 1 << 20}
	if _, err := topology.Ensure(ctx, js, base.Topology()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(*Env)
		want   []string
	}{
		{"reply age", func(e *Env) { e.ReplyMaxAge = 5 * time.Minute },
			[]string{"max_age is 15m0s, want 5m0s", "set CHATFLEET_REPLY_MAX_AGE=15m0s", "edit the stream CHAT_REPLIES"}},
		{"ack wait and max deliver", func(e *Env) { e.AckWait, e.MaxDeliver = 10*time.Second, 3 },
			[]string{"set CHATFLEET_ACK_WAIT=30s, CHATFLEET_MAX_DELIVER=5", "consumer chat_workers"}},
		{"cache ttl", func(e *Env) { e.CacheTTL = time.Hour }, []string{"set CHATFLEET_CACHE_TTL=24h0m0s", "bucket chat_cache"}},
		{"job size", func(e *Env) { e.MaxJobBytes = 8 << 20 }, []string{"CHATFLEET_MAX_JOB_BYTES to match max_msg_size 8388608"}},
		{"queue timeout", func(e *Env) { e.QueueTimeout = time.Minute }, []string{"set CHATFLEET_QUEUE_TIMEOUT=0s", "edit the stream CHAT_JOBS"}},
	} {
		e := base
		tc.change(&e)
		_, err := topology.Ensure(ctx, js, e.Topology())
		err = e.ExplainTopology(err)
		if !errors.Is(err, topology.ErrMismatch) {
			t.Fatalf("%s: %v, want a mismatch", tc.name, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", tc.name, err, w)
			}
		}
		if strings.Contains(err.Error(), "duplicate_window") {
			t.Errorf("%s: %q names the duplicate window, which did not change", tc.name, err)
		}
	}
	other := errors.New("not a mismatch")
	if base.ExplainTopology(other) != other || base.ExplainTopology(nil) != nil {
		t.Error("other errors must come back unchanged")
	}
}
