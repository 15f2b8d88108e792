package config

import (
	"context"
	"errors"
	"os"
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
		{"job size", func(e *Env) { e.MaxJobBytes = 8 << 20 }, []string{"max_msg_size is 8388608, want 16777216", "set CHATFLEET_MAX_JOB_BYTES ≤ 4194304"}},
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
		// One piece of advice, not the mismatch's generic one as well.
		if strings.Contains(err.Error(), "align this process") || strings.Count(err.Error(), "nats CLI") != 1 {
			t.Errorf("%s: %q gives its advice twice", tc.name, err)
		}
		if tc.name == "reply age" {
			if readme := readmeMismatch(t); err.Error() != readme {
				t.Errorf("the README's example differs from the message:\n%s\n%s", readme, err)
			}
		}
	}
	other := errors.New("not a mismatch")
	if base.ExplainTopology(other) != other || base.ExplainTopology(nil) != nil {
		t.Error("other errors must come back unchanged")
	}
}

// readmeMismatch returns the README's example of a topology mismatch, its
// lines joined.
func readmeMismatch(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(b), "```\ntopology: ")
	block, _, ok2 := strings.Cut(block, "\n```")
	if !ok || !ok2 {
		t.Fatal("README.md has no example of a topology mismatch")
	}
	return "topology: " + strings.ReplaceAll(block, "\n", " ")
}

// TestJobBytesHint: the jobs stream stores max(8 MiB, 2×MAX_JOB_BYTES),
// so its 8 MiB takes any value up to 4 MiB, more takes half of it, and an
// odd or unlimited size no value at all.
func TestJobBytesHint(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ have, want string }{
		{"8388608", "V ≤ 4194304"},
		{"16777216", "V=8388608"},
		{"16777217", ""},
		{"4194304", ""},
		{"-1", ""},
		{"lots", ""},
	} {
		got, ok := jobBytes("V", tt.have)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("jobBytes(%s) = %q, %v; want %q", tt.have, got, ok, tt.want)
		}
	}
}
