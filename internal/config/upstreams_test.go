package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUpstreamsFile: the file's upstreams become worker configs with their
// keys read from the variable or file named; bad files are refused with
// the file, the upstream and the reason, never a key.
func TestUpstreamsFile(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "b.key")
	if err := os.WriteFile(keyFile, []byte("sk-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_UPSTREAM_KEY", "sk-from-env")
	write := func(body string) string {
		p := filepath.Join(dir, "upstreams.json")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	e := Env{UpstreamsFile: write(`{"upstreams": [
		{"name": "a", "base_url": "http://a/v1", "api_key_env": "TEST_UPSTREAM_KEY", "models": ["m"], "weight": 2, "max_streams": 8},
		{"name": "b", "base_url": "http://b/v1", "api_key_file": "` + keyFile + `", "models": ["m", "n"], "requests_per_minute": 60}]}`),
		LLMRetries: 3}
	ups, err := e.Upstreams()
	if err != nil {
		t.Fatal(err)
	}
	if len(ups) != 2 || ups[0].LLM.APIKey != "sk-from-env" || ups[1].LLM.APIKey != "sk-from-file" || ups[0].Weight != 2 ||
		ups[0].Limits.MaxStreams != 8 || ups[1].Limits.RequestsPerMinute != 60 || ups[1].LLM.BaseURL != "http://b/v1" || ups[0].LLM.MaxRetries != 3 {
		t.Errorf("upstreams = %+v", ups)
	}
	for _, tc := range []struct{ body, want string }{
		{`{"upstreams": [{"name": "a", "base_url": "http://a/v1", "api_key": "sk-secret", "models": ["m"]}]}`, "api_key_env"},
		{`{"upstreams": [{"name": "default", "base_url": "http://a/v1", "models": ["m"]}]}`, "taken"},
		{`{"upstreams": [{"name": "a", "models": ["m"]}]}`, "base_url and models are required"},
		{`{"upstreams": [{"name": "a.b", "base_url": "http://a/v1", "models": ["m"]}]}`, "upstream 1 (a.b)"},
		{`{"upstreams": [{"name": "a", "base_url": "http://a/v1", "models": ["m"], "api_key_env": "NOT_SET_ANYWHERE"}]}`, "NOT_SET_ANYWHERE, which is not set"},
		{`{"upstreams": [{"name": "a", "base_url": "http://a/v1", "models": ["m"], "max_streams": -1}]}`, "must not be negative"},
	} {
		_, err := Env{UpstreamsFile: write(tc.body)}.Upstreams()
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "sk-secret") {
			t.Errorf("%s: err %v, want one saying %q (and no key)", tc.body, err, tc.want)
		}
	}
}
