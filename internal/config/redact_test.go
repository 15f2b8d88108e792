package config

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://bob:PASSWORD@10.0.0.1:4222", "nats://bob:xxxxx@10.0.0.1:4222"},
		{"nats://s3cr3t-token@nats.example:4222", "nats://xxxxx@nats.example:4222"},
		{"nats://a:pw1@h1:4222, nats://b:pw2@h2:4222", "nats://a:xxxxx@h1:4222,nats://b:xxxxx@h2:4222"},
		{"bob:PASSWORD@host:4222", "xxxxx@host:4222"},
		{"nats://bob:PASS@[::1", "nats://xxxxx@[::1"},
		{"https://user:pa%20ss@llm.example/v1?api-key=KEY&x=1", "https://user:xxxxx@llm.example/v1?api-key=xxxxx&x=xxxxx"},
		{"http://localhost:11434/v1", "http://localhost:11434/v1"},
		{"", ""},
	} {
		got := RedactURL(tc.in)
		if got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
		for _, secret := range []string{"PASSWORD", "PASS", "s3cr3t", "pw1", "pw2", "KEY", "pa ss", "pa%20ss"} {
			if strings.Contains(got, secret) {
				t.Errorf("RedactURL(%q) = %q still holds %q", tc.in, got, secret)
			}
		}
	}
}

// TestRedactError: every configured secret leaves an error's text; the
// error chain is kept for errors.Is.
func TestRedactError(t *testing.T) {
	t.Parallel()
	e := Env{NATSURL: "nats://bob:url-pass@h:4222,nats://tok-in-url@h2:4222", NATSPassword: "env-pass",
		NATSToken: "env-token", LLMAPIKey: "sk-key", LLMBaseURL: "https://u:base-pass@llm/v1"}
	inner := fs.ErrNotExist
	err := e.Redact(errors.Join(errors.New("url-pass tok-in-url env-pass env-token sk-key base-pass"), inner))
	for _, s := range []string{"url-pass", "tok-in-url", "env-pass", "env-token", "sk-key", "base-pass"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("%q survived: %v", s, err)
		}
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the chain was lost: %v", err)
	}
	if plain := errors.New("nothing secret"); e.Redact(plain) != plain || e.Redact(nil) != nil {
		t.Error("an error without secrets must come back as is")
	}
}
