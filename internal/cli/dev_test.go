package cli_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
)

// devEnv configures dev mode on free ports and a temporary data directory
// with no upstream, and returns the NATS and health addresses. The
// simulated model answers 40 tokens, 10ms apart.
func devEnv(t *testing.T) (natsAddr, httpAddr string) {
	t.Helper()
	natsAddr, httpAddr = freeAddr(t), freeAddr(t)
	t.Setenv("CHATFLEET_DEV_LISTEN", natsAddr)
	t.Setenv("CHATFLEET_DEV_MODEL_LISTEN", freeAddr(t))
	t.Setenv("CHATFLEET_DEV_TOKENS", "40")
	t.Setenv("CHATFLEET_DEV_TOKEN_DELAY", "10ms")
	t.Setenv("CHATFLEET_PREFIX", "chat")
	t.Setenv("CHATFLEET_MODEL", "gpt-4o-mini")
	t.Setenv("CHATFLEET_DEV_DATA_DIR", t.TempDir())
	t.Setenv("CHATFLEET_HTTP_ADDR", httpAddr)
	t.Setenv("CHATFLEET_GATEWAY_ADDR", "127.0.0.1:0") // a free port; the banner names it
	t.Setenv("CHATFLEET_LOG_FORMAT", "text")
	t.Setenv("CHATFLEET_LOG_LEVEL", "info")
	t.Setenv("CHATFLEET_WORKER_ID", "")
	t.Setenv("CHATFLEET_DEV_WORKERS", "1")
	// Empty counts as unset for the upstream and its fallbacks.
	for _, k := range []string{"CHATFLEET_LLM_BASE_URL", "CHATFLEET_LLM_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL"} {
		t.Setenv(k, "")
	}
	useNATS(t, "nats://"+natsAddr)
	return natsAddr, httpAddr
}

// startDev starts `chatfleet dev` and waits until it is up. The returned
// stop cancels it and returns its result; it runs at cleanup too.
func startDev(t *testing.T, ctx context.Context) (dev *running, stop func() result) {
	t.Helper()
	devCtx, cancel := context.WithCancel(context.Background())
	dev = start(devCtx, "dev")
	var res *result
	stop = func() result {
		if res == nil {
			cancel()
			r := dev.wait(t, 60*time.Second)
			res = &r
		}
		return *res
	}
	t.Cleanup(func() { stop() })
	dev.waitErr(t, ctx, "Ctrl-C stops.") // the end of the banner, printed after "chatfleet dev is up"
	return dev, stop
}

// TestDevSimulatedModel: with no upstream configured, dev runs NATS, a
// worker and the simulated model, says so, serves /healthz and answers
// ask from another client; cancelling its context stops it with 0.
func TestDevSimulatedModel(t *testing.T) {
	endToEnd(t)
	natsAddr, httpAddr := devEnv(t)
	ctx := fleettest.Context(t, 60*time.Second)
	dev, stop := startDev(t, ctx)

	log := dev.err.String()
	if !strings.Contains(log, "SIMULATED MODEL") {
		t.Errorf("dev does not warn of the simulated model:\n%s", log)
	}
	if !strings.Contains(log, "nats://"+natsAddr) {
		t.Errorf("dev does not say where NATS is (%s):\n%s", natsAddr, log)
	}
	// The banner: the ask hint carries the (non-default) NATS URL; the
	// second worker's health endpoint is the next port.
	_, port, _ := net.SplitHostPort(httpAddr)
	p, _ := strconv.Atoi(port)
	for _, want := range []string{
		"CHATFLEET_NATS_URL=nats://" + natsAddr + " go run ./cmd/chatfleet ask \"hello\"",
		"CHATFLEET_HTTP_ADDR=127.0.0.1:" + strconv.Itoa(p+1),
		"CHATFLEET_LLM_BASE_URL=http://" + os.Getenv("CHATFLEET_DEV_MODEL_LISTEN") + "/v1",
		"base_url=http://" + os.Getenv("CHATFLEET_DEV_MODEL_LISTEN") + "/v1 model=gpt-4o-mini",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("dev's log and banner lack %q:\n%s", want, log)
		}
	}

	if body := get(t, ctx, "http://"+httpAddr+"/healthz"); body != "ok\n" {
		t.Errorf("healthz: %q", body)
	}

	// The gateway the banner names answers an OpenAI request.
	gw := regexp.MustCompile(`curl (http://127\.0\.0\.1:[0-9]+/v1)/chat/completions`).FindStringSubmatch(log)
	if gw == nil {
		t.Fatalf("dev's banner names no gateway:\n%s", log)
	}
	code, body := post(t, ctx, gw[1]+"/chat/completions", "", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}`)
	if code != http.StatusOK || !strings.Contains(body, `Simulated answer to \"hello\"`) {
		t.Errorf("dev's gateway: %d %s", code, body)
	}

	res := run(ctx, "", "ask", "hello")
	if res.code != 0 {
		t.Fatalf("ask against dev: %v\ndev log:\n%s", res, dev.err.String())
	}
	if !strings.HasPrefix(res.out, `Simulated answer to "hello".`) || !strings.HasSuffix(res.out, ".\n") ||
		len(llmtest.SplitTokens(strings.TrimSuffix(res.out, "\n"))) != 40 {
		t.Errorf("ask printed %q, want the simulated answer of CHATFLEET_DEV_TOKENS=40 tokens", res.out)
	}
	// max_tokens cuts it short, as a model would.
	res = run(ctx, "", "ask", "--json", "--max-tokens", "5", "hello")
	var content strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(res.out), "\n") {
		var ev protocol.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		content.WriteString(ev.Content)
		if ev.Type == protocol.EventDone && ev.FinishReason != "length" {
			t.Errorf("done = %+v, want finish_reason length", ev)
		}
	}
	if n := len(llmtest.SplitTokens(content.String())); res.code != 0 || n != 5 {
		t.Errorf("ask --max-tokens 5: %d tokens: %v", n, res)
	}

	dres := stop()
	if dres.code != 0 {
		t.Errorf("dev exit %d, want 0:\n%s", dres.code, dres.err)
	}
	if !strings.Contains(dres.err, "worker stopped") {
		t.Errorf("dev did not stop its worker:\n%s", dres.err)
	}
	// Everything is down: NATS no longer answers.
	if res := run(ctx, "", "ask", "--timeout", "5s", "hello again"); res.code != 1 || !strings.Contains(res.err, "connect to NATS") {
		t.Errorf("ask after dev stopped: %v; want exit 1, cannot connect", res)
	}
}

// TestDevOnlyNATS: with CHATFLEET_DEV_WORKERS=0 dev runs NATS alone, with
// the topology in place: status works and a job is accepted and waits in
// the queue (ask gives up at --timeout: nobody answers).
func TestDevOnlyNATS(t *testing.T) {
	endToEnd(t)
	devEnv(t)
	t.Setenv("CHATFLEET_DEV_WORKERS", "0")
	ctx := fleettest.Context(t, 60*time.Second)
	dev, stop := startDev(t, ctx)
	if log := dev.err.String(); !strings.Contains(log, "workers=0") {
		t.Errorf("dev does not report 0 workers:\n%s", log)
	}

	res := run(ctx, "", "ask", "--timeout", "1s", "hello")
	if res.code != 1 || strings.Contains(res.err, "connect to NATS") || strings.Contains(res.err, "init") {
		t.Errorf("ask with no workers: %v; want exit 1 at --timeout, the job accepted", res)
	}
	res = run(ctx, "", "status", "--wait", "100ms")
	if res.code != 0 || !strings.Contains(res.out, "1 waiting") || !strings.Contains(res.out, "0 workers") {
		t.Errorf("status with no workers: %v", res)
	}
	if dres := stop(); dres.code != 0 {
		t.Errorf("dev exit %d, want 0:\n%s", dres.code, dres.err)
	}
}

// TestDevSecondWorker: the worker command dev's banner prints, run as
// printed in a terminal that has none of dev's settings, joins dev's NATS
// and simulated model and answers, configured as dev is: dev's non-default
// topology settings and model come with the command.
func TestDevSecondWorker(t *testing.T) {
	endToEnd(t)
	devEnv(t)
	t.Setenv("CHATFLEET_DEV_WORKERS", "0")
	t.Setenv("CHATFLEET_HTTP_ADDR", "") // no port to guess for the second worker's health endpoint
	settings := map[string]string{"CHATFLEET_QUEUE_TIMEOUT": "3s", "CHATFLEET_CACHE_TTL": "1h", "CHATFLEET_MODEL": "dev-model"}
	for k, v := range settings {
		t.Setenv(k, v)
	}
	ctx := fleettest.Context(t, 60*time.Second)
	dev, _ := startDev(t, ctx)
	cmd := printedWorker(t, dev.err.String())
	for k, v := range settings {
		if !strings.Contains(cmd, k+"="+v) {
			t.Errorf("the worker command lacks %s=%s: %s", k, v, cmd)
		}
		unsetenv(t, k) // another terminal
	}
	w := startPrinted(t, ctx, cmd)

	// dev runs no worker of its own: the answer comes from this one, over
	// the NATS and the simulated model the command named.
	res := run(ctx, "", "ask", "--json", "who answers?")
	var meta protocol.Event
	if err := json.Unmarshal([]byte(strings.SplitN(res.out, "\n", 2)[0]), &meta); err != nil || res.code != 0 ||
		meta.Worker != "second" || meta.Model != "dev-model" || !strings.Contains(res.out, `"content":"Simulated"`) {
		t.Errorf("ask: %v", res)
	}
	if res := w.stop(t); res.code != 0 {
		t.Errorf("second worker: %v", res)
	}
}

// TestDevSecondWorkerRealUpstream: with an upstream configured, the
// banner's worker command names its base URL, credentials redacted, and
// says to add the API key, which it never prints; run in a terminal that
// has only that key, it answers from the same upstream.
func TestDevSecondWorkerRealUpstream(t *testing.T) {
	endToEnd(t)
	const apiKey = "sk-dev-banner-test-61f0"
	up := llmtest.New()
	t.Cleanup(up.Close)
	devEnv(t)
	t.Setenv("CHATFLEET_DEV_WORKERS", "0")
	t.Setenv("CHATFLEET_HTTP_ADDR", "")
	t.Setenv("OPENAI_BASE_URL", up.URL()) // the fallback counts as configured too
	t.Setenv("OPENAI_API_KEY", apiKey)
	ctx := fleettest.Context(t, 60*time.Second)
	dev, _ := startDev(t, ctx)
	log := dev.err.String()
	cmd := printedWorker(t, log)
	if !strings.Contains(log, "Another worker on the same upstream at "+up.URL()+", plus your CHATFLEET_LLM_API_KEY / OPENAI_API_KEY:") ||
		!strings.Contains(cmd, "CHATFLEET_LLM_BASE_URL="+up.URL()) || strings.Contains(log, "SIMULATED") {
		t.Fatalf("dev's banner does not name the upstream and the key to add:\n%s", log)
	}
	if strings.Contains(log, apiKey) {
		t.Fatalf("dev printed the API key:\n%s", log)
	}
	unsetenv(t, "OPENAI_BASE_URL") // another terminal, with the user's key
	w := startPrinted(t, ctx, cmd)
	res := run(ctx, "", "ask", "--id", "real-1", "hello upstream")
	if res.code != 0 || up.Calls() != 1 || res.out != llmtest.Answer(up.Requests()[0])+"\n" {
		t.Errorf("ask: %v (%d upstream calls)", res, up.Calls())
	}
	if got := up.Requests()[0].Header.Get("Authorization"); got != "Bearer "+apiKey {
		t.Errorf("upstream Authorization = %q, want the user's key", got)
	}
	if res := w.stop(t); res.code != 0 {
		t.Errorf("second worker: %v", res)
	}
}

// TestDevBannerRedactsBaseURL: a base URL with credentials is printed
// redacted, and the command says what to put in their place.
func TestDevBannerRedactsBaseURL(t *testing.T) {
	endToEnd(t)
	devEnv(t)
	t.Setenv("CHATFLEET_DEV_WORKERS", "0")
	t.Setenv("CHATFLEET_LLM_BASE_URL", "http://proxy:proxy-pw-83c1@127.0.0.1:1/v1?key=q-key-5a0e")
	dev, stop := startDev(t, fleettest.Context(t, 60*time.Second))
	log := dev.err.String()
	if !strings.Contains(log, "CHATFLEET_LLM_BASE_URL='http://proxy:xxxxx@127.0.0.1:1/v1?key=xxxxx'") ||
		!strings.Contains(log, "plus the base URL's credentials in place of xxxxx:") ||
		strings.Contains(log, "proxy-pw-83c1") || strings.Contains(log, "q-key-5a0e") {
		t.Errorf("dev's banner:\n%s", log)
	}
	if res := stop(); res.code != 0 {
		t.Errorf("dev: %v", res)
	}
}

// printedWorker returns the worker command of dev's banner.
func printedWorker(t *testing.T, banner string) string {
	t.Helper()
	for _, line := range strings.Split(banner, "\n") {
		if strings.HasSuffix(line, " worker") && strings.Contains(line, "CHATFLEET_") {
			return strings.TrimSpace(line)
		}
	}
	t.Fatalf("no worker command in dev's banner:\n%s", banner)
	return ""
}

// printedRun is a worker started from a banner's command.
type printedRun struct {
	*running
	cancel context.CancelFunc
}

// stop stops the worker and returns its result.
func (w printedRun) stop(t *testing.T) result {
	t.Helper()
	w.cancel()
	return w.wait(t, 30*time.Second)
}

// startPrinted runs cmd, `VAR=value … go run ./cmd/chatfleet worker`, as
// printed (no value needs shell quotes here) with the worker ID second,
// and waits until it has started.
func startPrinted(t *testing.T, ctx context.Context, cmd string) printedRun {
	t.Helper()
	fields := strings.Fields(cmd)
	if len(fields) < 4 || strings.Join(fields[len(fields)-4:], " ") != "go run ./cmd/chatfleet worker" {
		t.Fatalf("not a worker command: %q", cmd)
	}
	for _, kv := range fields[:len(fields)-4] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, "CHATFLEET_") {
			t.Fatalf("%q in %q is not a variable", kv, cmd)
		}
		t.Setenv(k, v)
	}
	t.Setenv("CHATFLEET_WORKER_ID", "second")
	wctx, cancel := context.WithCancel(context.Background())
	w := printedRun{start(wctx, "worker"), cancel}
	t.Cleanup(func() { w.stop(t) })
	w.waitErr(t, ctx, "worker started")
	return w
}

// TestDevLeftoverData: dev run again with another topology setting than
// the data directory it left behind is refused with the mismatch, and
// told that removing the directory starts afresh; it does.
func TestDevLeftoverData(t *testing.T) {
	endToEnd(t)
	devEnv(t)
	t.Setenv("CHATFLEET_DEV_WORKERS", "0")
	t.Setenv("CHATFLEET_HTTP_ADDR", "")
	dir := os.Getenv("CHATFLEET_DEV_DATA_DIR")
	ctx := fleettest.Context(t, 60*time.Second)
	t.Setenv("CHATFLEET_QUEUE_TIMEOUT", "3s")
	_, stop := startDev(t, ctx)
	if res := stop(); res.code != 0 {
		t.Fatalf("first dev: %v", res)
	}

	unsetenv(t, "CHATFLEET_QUEUE_TIMEOUT")
	res := run(ctx, "", "dev")
	if res.code != 1 || !strings.Contains(res.err, `is \"3s\", want \"5m0s\"`) ||
		!strings.Contains(res.err, "or remove "+dir+" (CHATFLEET_DEV_DATA_DIR) to start afresh") {
		t.Errorf("dev on the leftover data: %v", res)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	_, stop = startDev(t, ctx)
	if res := stop(); res.code != 0 {
		t.Errorf("dev after removing its data: %v", res)
	}
}

// unsetenv unsets the variable k for the rest of the test; t restores it.
func unsetenv(t *testing.T, k string) {
	t.Helper()
	t.Setenv(k, "")
	if err := os.Unsetenv(k); err != nil {
		t.Fatal(err)
	}
}

// TestDevAddressInUse: a taken address fails dev at once, naming the
// variable to change.
func TestDevAddressInUse(t *testing.T) {
	ctx := fleettest.Context(t, 60*time.Second)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, variable := range []string{"CHATFLEET_DEV_LISTEN", "CHATFLEET_DEV_MODEL_LISTEN"} {
		devEnv(t)
		t.Setenv(variable, ln.Addr().String())
		res := run(ctx, "", "dev")
		if res.code != 1 || !strings.Contains(res.err, "address already in use") || !strings.Contains(res.err, "set "+variable) {
			t.Errorf("%s taken: %v", variable, res)
		}
	}
}

// TestDevGracefulShutdown: stopping dev lets a request in flight finish
// (within CHATFLEET_SHUTDOWN_GRACE) before NATS goes away: the ask still
// gets its whole answer.
func TestDevGracefulShutdown(t *testing.T) {
	endToEnd(t)
	devEnv(t)
	ctx := fleettest.Context(t, 60*time.Second)
	dev, stop := startDev(t, ctx)

	ask := start(ctx, "ask", "--json", "--timeout", "20s", "tell me a long story about many things please")
	ask.out.WaitFor(t, ctx, `"type":"meta"`) // the worker has the request
	dres := stop()
	if dres.code != 0 {
		t.Errorf("dev exit %d, want 0:\n%s", dres.code, dres.err)
	}
	if strings.Contains(dres.err, "not published") || strings.Contains(dres.err, "not stored") {
		t.Errorf("dev lost events of the request in flight:\n%s", dres.err)
	}
	res := ask.wait(t, 30*time.Second)
	if res.code != 0 || !strings.Contains(res.out, `"type":"done"`) {
		t.Errorf("ask in flight when dev stopped: %v\ndev log:\n%s", res, dev.err.String())
	}
}
