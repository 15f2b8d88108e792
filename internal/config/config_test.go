package config

import (
	"strings"
	"testing"
	"time"
)

// Variables are read by their full CHATFLEET_ names only: shells commonly
// export PREFIX, MODEL and the like for other purposes.
func TestLoadIgnoresUnprefixedNames(t *testing.T) {
	t.Setenv("PREFIX", "/usr/local")
	t.Setenv("MODEL", "leaked")
	t.Setenv("NATS_URL", "nats://elsewhere:4222")
	e, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if e.Prefix != "chat" || e.Model != "gpt-4o-mini" || e.NATSURL != "nats://127.0.0.1:4222" {
		t.Errorf("unprefixed variables leaked in: prefix %q model %q url %q", e.Prefix, e.Model, e.NATSURL)
	}
	t.Setenv("CHATFLEET_PREFIX", "acme.chat")
	if e, _ = Load(); e.Prefix != "acme.chat" {
		t.Errorf("CHATFLEET_PREFIX not read: %q", e.Prefix)
	}
}

func TestOpenAIFallbacks(t *testing.T) {
	t.Setenv("CHATFLEET_LLM_API_KEY", "")
	t.Setenv("CHATFLEET_LLM_BASE_URL", "")
	t.Setenv("OPENAI_API_KEY", "sk-fallback")
	t.Setenv("OPENAI_BASE_URL", "http://fallback/v1")
	e, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if e.LLMAPIKey != "sk-fallback" || e.LLMBaseURL != "http://fallback/v1" || !e.UpstreamConfigured() {
		t.Errorf("fallbacks not used: %+v", e.LLM())
	}
	t.Setenv("CHATFLEET_LLM_API_KEY", "sk-own")
	if e, _ = Load(); e.LLMAPIKey != "sk-own" {
		t.Errorf("CHATFLEET_LLM_API_KEY must win, got %q", e.LLMAPIKey)
	}
	t.Setenv("CHATFLEET_LLM_API_KEY", "")
	t.Setenv("OPENAI_API_KEY", "")
	t.Setenv("OPENAI_BASE_URL", "")
	if e, _ = Load(); e.UpstreamConfigured() {
		t.Errorf("no upstream configured, but UpstreamConfigured is true")
	}
}

func TestStreamOptionsSetting(t *testing.T) {
	e, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if e.LLM().NoStreamOptions {
		t.Errorf("stream_options off by default")
	}
	t.Setenv("CHATFLEET_LLM_STREAM_OPTIONS", "false")
	if e, err = Load(); err != nil || !e.LLM().NoStreamOptions {
		t.Errorf("CHATFLEET_LLM_STREAM_OPTIONS=false: NoStreamOptions = %v, %v", e.LLM().NoStreamOptions, err)
	}
}

func TestWorkerConfig(t *testing.T) {
	t.Setenv("CHATFLEET_CHUNK_WINDOW", "0")
	t.Setenv("CHATFLEET_DEDUPE", "false")
	t.Setenv("CHATFLEET_LEASE_TTL", "3s")
	t.Setenv("CHATFLEET_QUEUE_TIMEOUT", "0")
	t.Setenv("CHATFLEET_ALLOWED_MODELS", "a,b")
	e, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	w := e.Worker(e.LLM(), nil)
	if w.Manager.ChunkWindow >= 0 {
		t.Errorf("CHATFLEET_CHUNK_WINDOW=0 must disable merging (negative), got %s", w.Manager.ChunkWindow)
	}
	if !w.Manager.DisableDedupe || w.Manager.DisableCache {
		t.Errorf("dedupe/cache switches: %+v", w.Manager)
	}
	if w.Topology.QueueTimeout >= 0 {
		t.Errorf("CHATFLEET_QUEUE_TIMEOUT=0 must disable the fleet's queue timeout (negative), got %s", w.Topology.QueueTimeout)
	}
	if w.Topology.LeaseTTL != 3*time.Second || strings.Join(w.Manager.Limits.AllowedModels, ",") != "a,b" {
		t.Errorf("topology/limits: %+v %+v", w.Topology, w.Manager.Limits)
	}
}

func TestLoggerRejectsBadValues(t *testing.T) {
	for _, e := range []Env{{LogFormat: "xml", LogLevel: "info"}, {LogFormat: "text", LogLevel: "loud"}} {
		if _, err := e.Logger(nil); err == nil {
			t.Errorf("%+v: want an error", e)
		}
	}
}

// TestWaitingLeaders: unset leaves the manager's default (one per upstream
// slot); 0 turns the fast lane off; a number is taken as it is.
func TestWaitingLeaders(t *testing.T) {
	for _, tt := range []struct {
		env  string
		set  bool
		want int
	}{{"", false, 16}, {"0", true, -1}, {"3", true, 3}} {
		if tt.set {
			t.Setenv("CHATFLEET_MAX_WAITING_LEADERS", tt.env)
		}
		e, err := Load()
		if err != nil {
			t.Fatal(err)
		}
		if got := e.Worker(e.LLM(), nil).Manager.WithDefaults().MaxWaitingLeaders; got != tt.want {
			t.Errorf("CHATFLEET_MAX_WAITING_LEADERS=%q: %d, want %d", tt.env, got, tt.want)
		}
	}
}

// TestCheckModel: the default model must be one the allow-list allows,
// when there is one; a list written with spaces is pointed out.
func TestCheckModel(t *testing.T) {
	for _, tt := range []struct {
		model   string
		allowed []string
		err     string
	}{
		{"m", nil, ""},
		{"m", []string{"a", "m"}, ""},
		{"m", []string{"a", "b"}, "CHATFLEET_MODEL=m is not in CHATFLEET_ALLOWED_MODELS=a,b: "},
		{"b", []string{"a", " b"}, "CHATFLEET_ALLOWED_MODELS=a, b (names are compared exactly, spaces included)"},
	} {
		err := Env{Model: tt.model, Models: tt.allowed}.CheckModel()
		if (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("model %q, allowed %q: %v, want %q", tt.model, tt.allowed, err, tt.err)
		}
	}
}
