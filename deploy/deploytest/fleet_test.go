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

	"github.com/chatfleet/chatfleet/internal/natstest"
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

// runFleet runs `chatfleet worker` and `chatfleet gateway` with the
// environments a deployment gives them on a real 3-node NATS cluster and
// a test upstream, changing only what must be local: addresses, the key
// file, the API key, and no trace export. It checks every probe the
// deployment declares answers, sends a request through the gateway, and
// returns the worker's /metrics after the answer.
func runFleet(t *testing.T, worker, gateway deployed) string {
	t.Helper()
	cluster := natstest.RunCluster(t, 3)
	var urls []string
	for _, s := range cluster.Servers {
		urls = append(urls, s.ClientURL())
	}
	llm := llmtest.New()
	t.Cleanup(llm.Close)
	key, keys := gatewayKey(t)

	local := func(env map[string]string) map[string]string {
		env = maps.Clone(env)
		maps.DeleteFunc(env, func(k, _ string) bool { return strings.HasPrefix(k, "OTEL_") })
		env["CHATFLEET_NATS_URL"] = strings.Join(urls, ",")
		env["CHATFLEET_HTTP_ADDR"] = freeAddr(t)
		return env
	}
	wenv := local(worker.env)
	wenv["CHATFLEET_LLM_BASE_URL"] = llm.URL()
	delete(wenv, "CHATFLEET_LLM_API_KEY")
	genv := local(gateway.env)
	genv["CHATFLEET_GATEWAY_ADDR"] = freeAddr(t)
	genv["CHATFLEET_GATEWAY_KEYS"] = keys

	bin := chatfleetBinary(t)
	w := startProcess(t, "worker", bin, wenv, "worker")
	checkProbes(t, w, worker.probes, wenv)
	g := startProcess(t, "gateway", bin, genv, "gateway")
	checkProbes(t, g, gateway.probes, genv)

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
	if len(indented) != 2 {
		t.Fatalf("chatfleet gateway key printed:\n%s", out)
	}
	return indented[0], indented[1]
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
