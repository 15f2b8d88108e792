package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/subjects"
	"github.com/chatfleet/chatfleet/worker"
)

// upstreamsFile is the JSON file CHATFLEET_UPSTREAMS names: more
// upstreams, by model, besides the default one (CHATFLEET_LLM_BASE_URL).
type upstreamsFile struct {
	Upstreams []upstreamEntry `json:"upstreams"`
}

// upstreamEntry is one upstream of the file. Its key is never in the file:
// api_key_env names the variable that holds it, or api_key_file a file.
type upstreamEntry struct {
	Name              string   `json:"name"`
	BaseURL           string   `json:"base_url"`
	APIKeyEnv         string   `json:"api_key_env"`
	APIKeyFile        string   `json:"api_key_file"`
	Models            []string `json:"models"`
	Weight            int      `json:"weight"`
	MaxStreams        int      `json:"max_streams"`
	RequestsPerMinute int64    `json:"requests_per_minute"`
	TokensPerMinute   int64    `json:"tokens_per_minute"`
}

// Upstreams reads the file CHATFLEET_UPSTREAMS names (none when unset):
// each upstream's client is configured like the default's (timeouts,
// retries, breaker), with its own base URL and key. Errors name the file
// and the upstream, never a key.
func (e Env) Upstreams() ([]worker.UpstreamConfig, error) {
	if e.UpstreamsFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(e.UpstreamsFile)
	if err != nil {
		return nil, fmt.Errorf("config: CHATFLEET_UPSTREAMS: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f upstreamsFile
	if err := dec.Decode(&f); err != nil {
		hint := ""
		if strings.Contains(err.Error(), `"api_key"`) {
			hint = " (keys are never written in the file: name the variable that holds one with api_key_env, or a file with api_key_file)"
		}
		return nil, fmt.Errorf("config: CHATFLEET_UPSTREAMS %s: %w%s", e.UpstreamsFile, err, hint)
	}
	seen := map[string]bool{protocol.DefaultUpstream: true}
	var out []worker.UpstreamConfig
	for i, u := range f.Upstreams {
		where := fmt.Sprintf("config: CHATFLEET_UPSTREAMS %s: upstream %d (%s)", e.UpstreamsFile, i+1, u.Name)
		if err := subjects.ValidName("upstream", u.Name); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		switch {
		case seen[u.Name]:
			return nil, fmt.Errorf("%s: the name is taken (%q is the CHATFLEET_LLM_BASE_URL upstream's)", where, protocol.DefaultUpstream)
		case u.BaseURL == "" || len(u.Models) == 0:
			return nil, fmt.Errorf("%s: base_url and models are required", where)
		case u.Weight < 0 || u.MaxStreams < 0 || u.RequestsPerMinute < 0 || u.TokensPerMinute < 0:
			return nil, fmt.Errorf("%s: weight and limits must not be negative", where)
		}
		seen[u.Name] = true
		key, err := u.key()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		llmCfg := e.LLM()
		llmCfg.BaseURL, llmCfg.APIKey = u.BaseURL, key
		out = append(out, worker.UpstreamConfig{Name: u.Name, Models: u.Models, Weight: u.Weight, LLM: llmCfg,
			Limits: protocol.UpstreamLimits{MaxStreams: u.MaxStreams, RequestsPerMinute: u.RequestsPerMinute, TokensPerMinute: u.TokensPerMinute}})
	}
	return out, nil
}

// key reads the upstream's API key from the variable or file named.
func (u upstreamEntry) key() (string, error) {
	switch {
	case u.APIKeyEnv != "" && u.APIKeyFile != "":
		return "", fmt.Errorf("api_key_env and api_key_file: set one")
	case u.APIKeyEnv != "":
		k, ok := os.LookupEnv(u.APIKeyEnv)
		if !ok {
			return "", fmt.Errorf("api_key_env names %s, which is not set", u.APIKeyEnv)
		}
		return k, nil
	case u.APIKeyFile != "":
		b, err := os.ReadFile(u.APIKeyFile)
		if err != nil {
			return "", fmt.Errorf("api_key_file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return "", nil
}
