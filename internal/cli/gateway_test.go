package cli_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/gateway"
	"github.com/chatfleet/chatfleet/internal/fleettest"
)

// TestGatewayCommand: `chatfleet gateway key` prints a key and its line;
// `chatfleet gateway` with that key file answers the key's holder, turns
// away a request without it, counts both on /metrics, and exits 0 when
// its context ends.
func TestGatewayCommand(t *testing.T) {
	newFleet(t, nil)
	ctx := fleettest.Context(t, 60*time.Second)

	res := run(ctx, "", "gateway", "key", "acme")
	key := regexp.MustCompile(`\n  (\S+)\n`).FindStringSubmatch(res.out)
	line := regexp.MustCompile(`(?m)^  (acme [0-9a-f]{64})$`).FindStringSubmatch(res.out)
	if res.code != 0 || key == nil || line == nil {
		t.Fatalf("gateway key: %v", res)
	}
	keys := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte(line[1]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	api, admin := freeAddr(t), freeAddr(t)
	t.Setenv("CHATFLEET_GATEWAY_ADDR", api)
	t.Setenv("CHATFLEET_GATEWAY_KEYS", keys)
	t.Setenv("CHATFLEET_HTTP_ADDR", admin)

	gwCtx, stop := context.WithCancel(context.Background())
	defer stop()
	g := start(gwCtx, "gateway")
	defer func() { stop(); g.wait(t, 30*time.Second) }()
	g.waitErr(t, ctx, "gateway started")

	body := `{"model":"` + testModel + `","messages":[{"role":"user","content":"hello gateway"}]}`
	if code, out := post(t, ctx, "http://"+api+"/v1/chat/completions", key[1], body); code != http.StatusOK || !strings.Contains(out, `"chat.completion"`) {
		t.Errorf("with the key: %d %s", code, out)
	}
	if code, out := post(t, ctx, "http://"+api+"/v1/chat/completions", "sk-wrong", body); code != http.StatusUnauthorized {
		t.Errorf("with a wrong key: %d %s, want 401", code, out)
	}
	metrics := get(t, ctx, "http://"+admin+"/metrics")
	if !strings.Contains(metrics, "chatfleet_gateway_requests_total") {
		t.Errorf("/metrics has no chatfleet_gateway_requests_total:\n%s", metrics)
	}

	stop()
	if r := g.wait(t, 30*time.Second); r.code != 0 {
		t.Errorf("gateway: %v, want exit 0", r)
	}
}

// TestGatewayKeysInBucket: `gateway key --kv` stores a key a gateway with
// CHATFLEET_GATEWAY_KEYS=kv takes; `gateway keys` lists it by hash;
// `gateway revoke` removes it and the running gateway refuses it.
func TestGatewayKeysInBucket(t *testing.T) {
	newFleet(t, nil) // its worker made the topology, the bucket included
	ctx := fleettest.Context(t, 60*time.Second)
	res := run(ctx, "", "gateway", "key", "--kv", "acme")
	key := regexp.MustCompile(`\n  (cf-\S+)\n`).FindStringSubmatch(res.out)
	if res.code != 0 || key == nil || strings.Contains(res.out, "acme "+key[1]) {
		t.Fatalf("gateway key --kv: %v", res)
	}
	hash := gateway.KeyHash(key[1])
	if res := run(ctx, "", "gateway", "keys"); res.code != 0 || res.out != hash+"  acme\n" {
		t.Errorf("gateway keys: %v", res)
	}

	api := freeAddr(t)
	t.Setenv("CHATFLEET_GATEWAY_ADDR", api)
	t.Setenv("CHATFLEET_GATEWAY_KEYS", "kv")
	t.Setenv("CHATFLEET_HTTP_ADDR", "")
	gwCtx, stop := context.WithCancel(context.Background())
	defer stop()
	g := start(gwCtx, "gateway")
	defer func() { stop(); g.wait(t, 30*time.Second) }()
	g.waitErr(t, ctx, "gateway started")

	body := `{"model":"` + testModel + `","messages":[{"role":"user","content":"hello bucket"}]}`
	if code, out := post(t, ctx, "http://"+api+"/v1/chat/completions", key[1], body); code != http.StatusOK {
		t.Errorf("with the stored key: %d %s", code, out)
	}
	if res := run(ctx, "", "gateway", "revoke", key[1]); res.code != 0 {
		t.Fatalf("gateway revoke: %v", res)
	}
	fleettest.Poll(t, ctx, "the revoked key refused", func() bool {
		code, _ := post(t, ctx, "http://"+api+"/v1/chat/completions", key[1], body)
		return code == http.StatusUnauthorized
	})
	if res := run(ctx, "", "gateway", "revoke", hash); res.code != 1 || !strings.Contains(res.err, "no such key") {
		t.Errorf("revoking twice: %v", res)
	}
}

// TestGatewayKeyUsage: a key needs exactly one valid tenant name.
func TestGatewayKeyUsage(t *testing.T) {
	ctx := fleettest.Context(t, 10*time.Second)
	for _, args := range [][]string{{"gateway", "key"}, {"gateway", "key", "a.b"}, {"gateway", "key", "a", "b"},
		{"gateway", "key", "--kv", "a.b"}, {"gateway", "revoke"}, {"gateway", "keys", "x"}} {
		if res := run(ctx, "", args...); res.code != 2 || res.out != "" {
			t.Errorf("%v: %v, want exit 2 and no key", args, res)
		}
	}
}

// post sends body with key as its bearer token; it returns the status and
// the response body.
func post(t *testing.T, ctx context.Context, url, key, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	return do(t, req)
}

// get returns url's body, failing the test unless it answers 200.
func get(t *testing.T, ctx context.Context, url string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	code, body := do(t, req)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	return body
}

// do sends req on a connection of its own.
func do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
