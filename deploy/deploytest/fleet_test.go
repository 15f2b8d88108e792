package deploytest

import (
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chatfleet/chatfleet/llm/llmtest"
)

// deployed is a container as a deployment runs it: its environment and
// the probes it declares.
type deployed struct {
	env    map[string]string
	probes []probe
}

// probe is a liveness or readiness check: an HTTP GET of path, or with no
// path a TCP connect, on the port of the address in portVar.
type probe struct {
	path    string
	portVar string
}

// fleetRun is a deployment as it runs: the configuration its NATS
// servers run (chatfleet auth's included), its worker and gateway, and the
// environment its operators' commands run with.
type fleetRun struct {
	natsConf        string
	worker, gateway deployed
	// initTopology: the deployment runs chatfleet init with the
	// operators' environment before the gateway starts.
	initTopology bool
	operators    map[string]string
}

// runFleet runs `chatfleet worker` and `chatfleet gateway` with the
// environments a deployment gives them, each logged in as its own
// identity, on a real 3-node NATS cluster from the deployment's
// configuration and a test upstream, changing only what must be local:
// addresses, the key file, and no trace export. An operator adds an API
// key to the fleet's bucket (or makes a key file, when the gateway reads
// one). It checks every probe the deployment declares answers, sends a
// request through the gateway, and returns the worker's /metrics after
// the answer.
func runFleet(t *testing.T, f fleetRun) string {
	t.Helper()
	urls := runConfigCluster(t, f.natsConf)
	llm := llmtest.New()
	t.Cleanup(llm.Close)

	local := func(env map[string]string) map[string]string {
		env = maps.Clone(env)
		maps.DeleteFunc(env, func(k, _ string) bool { return strings.HasPrefix(k, "OTEL_") })
		env["CHATFLEET_NATS_URL"] = urls
		env["CHATFLEET_HTTP_ADDR"] = freeAddr(t)
		return env
	}
	ops := local(f.operators)
	if f.initTopology {
		run(t, ops, "init")
	}
	wenv := local(f.worker.env)
	wenv["CHATFLEET_LLM_BASE_URL"] = llm.URL()
	delete(wenv, "CHATFLEET_LLM_API_KEY")
	genv := local(f.gateway.env)
	genv["CHATFLEET_GATEWAY_ADDR"] = freeAddr(t)

	bin := chatfleetBinary(t)
	w := startProcess(t, "worker", bin, wenv, "worker")
	checkProbes(t, w, f.worker.probes, wenv)
	var key string
	if genv["CHATFLEET_GATEWAY_KEYS"] == "kv" {
		key, _ = parseGatewayKey(t, run(t, ops, "gateway", "key", "--kv", "default"))
	} else {
		key, genv["CHATFLEET_GATEWAY_KEYS"] = gatewayKey(t)
	}
	g := startProcess(t, "gateway", bin, genv, "gateway")
	checkProbes(t, g, f.gateway.probes, genv)

	answer := complete(t, "http://"+genv["CHATFLEET_GATEWAY_ADDR"], key, wenv["CHATFLEET_MODEL"])
	if answer == "" {
		t.Error("the gateway's answer is empty")
	}
	resp, err := http.Get("http://" + wenv["CHATFLEET_HTTP_ADDR"] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	metrics, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(metrics)
}

// checkProbes waits until every probe of p answers as a kubelet would
// want it to.
func checkProbes(t *testing.T, p *process, probes []probe, env map[string]string) {
	t.Helper()
	if len(probes) == 0 {
		t.Errorf("%s declares no probe", p.name)
	}
	for _, pr := range probes {
		_, port, err := net.SplitHostPort(env[pr.portVar])
		if err != nil {
			t.Fatalf("%s: %s=%q: %v", p.name, pr.portVar, env[pr.portVar], err)
		}
		addr := net.JoinHostPort("127.0.0.1", port)
		if pr.path == "" {
			p.waitFor(t, "TCP on "+pr.portVar, func() error { return tcpOpen(addr) })
			continue
		}
		p.waitFor(t, pr.path, func() error { return httpOK("http://" + addr + pr.path) })
	}
}

// gatewayKey makes an API key for tenant default with `chatfleet gateway
// key` and writes its line to a key file; it returns the key and the file.
func gatewayKey(t *testing.T) (key, file string) {
	t.Helper()
	out, err := exec.Command(chatfleetBinary(t), "gateway", "key", "default").Output()
	if err != nil {
		t.Fatalf("chatfleet gateway key: %v", err)
	}
	key, line := parseGatewayKey(t, string(out))
	file = filepath.Join(t.TempDir(), "gateway-keys")
	if err := os.WriteFile(file, []byte(line+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return key, file
}

// parseGatewayKey reads `chatfleet gateway key`'s output: the key, then
// the key file's line, each indented on the line after its heading.
func parseGatewayKey(t *testing.T, out string) (key, line string) {
	t.Helper()
	var indented []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "  ") {
			indented = append(indented, strings.TrimSpace(l))
		}
	}
	switch len(indented) {
	case 1: // --kv: the key; its hash went to the bucket
		return indented[0], ""
	case 2:
		return indented[0], indented[1]
	}
	t.Fatalf("chatfleet gateway key printed:\n%s", out)
	return "", ""
}

// complete asks the gateway at base for a whole chat completion and
// returns its content.
func complete(t *testing.T, base, key, model string) string {
	t.Helper()
	body := `{"model":` + quote(model) + `,"messages":[{"role":"user","content":"hello from deploytest"}]}`
	req, err := http.NewRequest(http.MethodPost, base+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/chat/completions: %d %s", resp.StatusCode, b)
	}
	var c struct {
		Choices []struct {
			Message struct{ Content string }
		}
	}
	if err := json.Unmarshal(b, &c); err != nil || len(c.Choices) != 1 {
		t.Fatalf("POST /v1/chat/completions: %v: %s", err, b)
	}
	return c.Choices[0].Message.Content
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
