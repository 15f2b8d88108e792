package deploytest

import (
	"encoding/json"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/chatfleet/chatfleet/internal/config"
)

// composeUpstreamsDir is where the workers mount ./upstreams, the
// directory of upstreams files CHATFLEET_UPSTREAMS may name.
const composeUpstreamsDir = "/etc/chatfleet/upstreams"

// checkComposeUpstreams: the fleet-wide limits are whole numbers on the
// workers and ops (whose status shows them); the workers mount
// ./upstreams, and its example files (an operator's own sit beside them)
// read as a worker reads them, each upstream a compose service on the
// port it listens on.
func checkComposeUpstreams(t *testing.T, p *types.Project, cf map[string]types.ServiceConfig) {
	t.Helper()
	for _, cmd := range []string{"worker", "status"} {
		env := composeEnv(t, cf[cmd])
		for _, v := range []string{"CHATFLEET_FLEET_MAX_LLM_STREAMS", "CHATFLEET_FLEET_REQUESTS_PER_MINUTE", "CHATFLEET_FLEET_TOKENS_PER_MINUTE"} {
			if !regexpDigits.MatchString(env[v]) {
				t.Errorf("%s: %s=%q, want a whole number", cf[cmd].Name, v, env[v])
			}
		}
	}
	worker := cf["worker"]
	if v, ok := composeEnv(t, worker)["CHATFLEET_UPSTREAMS"]; !ok || v != "" {
		t.Errorf("the workers' CHATFLEET_UPSTREAMS is %q (set: %v), want empty by default, settable in .env", v, ok)
	}
	files, err := filepath.Glob(filepath.Join(mount(t, worker, composeUpstreamsDir), "*.example.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no upstreams file in the workers' %s (%v)", composeUpstreamsDir, err)
	}
	for _, f := range files {
		if _, err := (config.Env{UpstreamsFile: f}).Upstreams(); err != nil {
			t.Errorf("a worker would refuse %s: %v", f, err)
		}
		var file struct {
			Upstreams []struct {
				BaseURL string `json:"base_url"`
			} `json:"upstreams"`
		}
		if err := json.Unmarshal(mustRead(t, f), &file); err != nil {
			t.Fatal(err)
		}
		for _, u := range file.Upstreams {
			base, err := url.Parse(u.BaseURL)
			if err != nil {
				t.Errorf("%s: %v", f, err)
				continue
			}
			s := service(t, p, base.Hostname())
			if listen := composeEnv(t, s)["CHATFLEET_DEV_MODEL_LISTEN"]; portOf(t, listen) != base.Port() {
				t.Errorf("%s names %s; %s listens on %q", filepath.Base(f), base, s.Name, listen)
			}
		}
	}
}
