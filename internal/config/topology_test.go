package config

import (
	"context"
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/topology"
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
	top, err := topology.Ensure(ctx, js, base.Topology())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := top.Queue(ctx, "acme", "normal"); err != nil { // queue consumers come with jobs
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
			[]string{"set CHATFLEET_ACK_WAIT=30s, CHATFLEET_MAX_DELIVER=5", "consumer chat_q_acme_normal"}},
		{"cache ttl", func(e *Env) { e.CacheTTL = time.Hour }, []string{"set CHATFLEET_CACHE_TTL=24h0m0s", "bucket chat_cache"}},
		{"job size", func(e *Env) { e.MaxJobBytes = 8 << 20 }, []string{"max_msg_size is 8388608, want 16777216", "set CHATFLEET_MAX_JOB_BYTES ≤ 4194304"}},
		{"queue timeout", func(e *Env) { e.QueueTimeout = time.Minute }, []string{"set CHATFLEET_QUEUE_TIMEOUT=0s", "edit the stream CHAT_JOBS"}},
		{"per-tenant cap", func(e *Env) { e.QueuePerTenant = 100 }, []string{"set CHATFLEET_MAX_QUEUED_PER_TENANT=0", "edit the stream CHAT_JOBS"}},
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

// TestTopologyVariables: the variables TopologyVariables names are exactly
// those Env.Topology reads: changing any of them changes the topology,
// changing any other variable does not.
func TestTopologyVariables(t *testing.T) {
	base, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	vars := TopologyVariables()
	typ := reflect.TypeFor[Env]()
	for i := range typ.NumField() {
		name := typ.Field(i).Tag.Get("envconfig")
		e := base
		f := reflect.ValueOf(&e).Elem().Field(i)
		switch f.Kind() {
		case reflect.Int, reflect.Int32, reflect.Int64:
			f.SetInt(f.Int()*10 + 7)
		case reflect.String:
			f.SetString(f.String() + "x")
		case reflect.Bool:
			f.SetBool(!f.Bool())
		case reflect.Slice:
			f.Set(reflect.ValueOf([]string{"x"}))
		case reflect.Pointer:
			f.Set(reflect.ValueOf(new(int)))
		default:
			t.Fatalf("%s: no change for a %s", name, f.Kind())
		}
		if changed, topo := !reflect.DeepEqual(e.Topology(), base.Topology()), slices.Contains(vars, name); changed != topo {
			t.Errorf("%s: changes the topology: %v; listed by TopologyVariables: %v", name, changed, topo)
		}
	}
}

// TestNonDefault: only values that differ from their defaults are named,
// however the default is spelled, and a process configured with them has
// the same topology.
func TestNonDefault(t *testing.T) {
	t.Setenv("CHATFLEET_QUEUE_TIMEOUT", "3s")
	t.Setenv("CHATFLEET_ACK_WAIT", "30000ms") // the default, 30s
	t.Setenv("CHATFLEET_MAX_DELIVER", "9")
	t.Setenv("CHATFLEET_MODEL", "m")
	t.Setenv("CHATFLEET_DEDUPE", "false") // not asked for
	e, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	got := e.NonDefault(append(TopologyVariables(), "CHATFLEET_MODEL")...)
	want := []string{"CHATFLEET_MODEL=m", "CHATFLEET_QUEUE_TIMEOUT=3s", "CHATFLEET_MAX_DELIVER=9"}
	if !slices.Equal(got, want) {
		t.Fatalf("NonDefault = %q, want %q", got, want)
	}
	for _, k := range []string{"CHATFLEET_QUEUE_TIMEOUT", "CHATFLEET_ACK_WAIT", "CHATFLEET_MAX_DELIVER", "CHATFLEET_MODEL"} {
		t.Setenv(k, "") // restored at the end
		if err := os.Unsetenv(k); err != nil {
			t.Fatal(err)
		}
	}
	for _, kv := range got {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	other, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(other.Topology(), e.Topology()) || other.Model != "m" {
		t.Errorf("configured from NonDefault: %+v, model %q; want %+v", other.Topology(), other.Model, e.Topology())
	}
}
