package cli_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natsserver"
	"github.com/chatfleet/chatfleet/internal/natstest"
)

// TestWorkerServesAndKeepsSecrets: `chatfleet worker` joins a fleet's
// NATS, answers an ask with the configured upstream and key, and stops
// when its context ends. Even at debug level, and with a job it rejects,
// its log holds neither the API key nor the prompt.
func TestWorkerServesAndKeepsSecrets(t *testing.T) {
	const (
		apiKey = "sk-cli-test-9d41c7e2b5"
		prompt = "zebra-quartz-marmalade-31337 is my question"
	)
	f := fleettest.New(t, fleettest.Options{}) // NATS and upstream only: the CLI's worker is the fleet's
	useNATS(t, f.NATS.ClientURL())
	workerID := fmt.Sprintf("cli-test-%d", os.Getpid())
	t.Setenv("CHATFLEET_LLM_API_KEY", apiKey)
	t.Setenv("CHATFLEET_LLM_BASE_URL", f.LLM.URL())
	t.Setenv("CHATFLEET_LOG_LEVEL", "debug")
	t.Setenv("CHATFLEET_LOG_FORMAT", "text")
	t.Setenv("CHATFLEET_HTTP_ADDR", "")
	t.Setenv("CHATFLEET_WORKER_ID", workerID)
	t.Setenv("CHATFLEET_MODEL", testModel)
	t.Setenv("CHATFLEET_ALLOWED_MODELS", testModel)
	ctx := fleettest.Context(t, 30*time.Second)

	workerCtx, stop := context.WithCancel(context.Background())
	defer stop()
	w := start(workerCtx, "worker")
	stopped := false
	defer func() { // never leave the worker running, even on a failure
		if !stopped {
			stop()
			w.wait(t, 30*time.Second)
		}
	}()
	w.waitErr(t, ctx, "worker started")

	res := run(ctx, "", "ask", "--json", prompt)
	if res.code != 0 {
		t.Fatalf("ask: %v\nworker log:\n%s", res, w.err.String())
	}
	if !strings.Contains(res.out, `"worker":"`+workerID+`"`) {
		t.Errorf("the answer did not come from worker %s:\n%s", workerID, res.out)
	}
	if f.LLM.Calls() != 1 {
		t.Fatalf("upstream calls = %d, want 1", f.LLM.Calls())
	}
	req := f.LLM.Requests()[0]
	if got := req.Header.Get("Authorization"); got != "Bearer "+apiKey {
		t.Errorf("upstream Authorization = %q, want the configured key", got)
	}
	if req.Model() != testModel || req.LastUserMessage() != prompt {
		t.Errorf("upstream got model %q prompt %q", req.Model(), req.LastUserMessage())
	}

	// A job the worker rejects is logged; its prompt is not.
	res = run(ctx, "", "ask", "--model", "forbidden-model", prompt)
	if res.code != 1 || !strings.Contains(res.err, "forbidden-model") {
		t.Errorf("ask with a model not allowed: %v; want exit 1 naming the model", res)
	}

	stop()
	stopped = true
	wres := w.wait(t, 30*time.Second)
	if wres.code != 0 {
		t.Errorf("worker exit %d, want 0", wres.code)
	}
	log := wres.err
	for _, want := range []string{"worker started", "worker=" + workerID, "invalid job terminated", "worker stopped"} {
		if !strings.Contains(log, want) {
			t.Errorf("worker log lacks %q:\n%s", want, log)
		}
	}
	for name, secret := range map[string]string{"API key": apiKey, "prompt": prompt, "prompt's marker": "zebra-quartz"} {
		if strings.Contains(log, secret) {
			t.Errorf("worker log contains the %s:\n%s", name, log)
		}
	}
	if strings.Contains(res.out+res.err, apiKey) {
		t.Errorf("ask printed the API key")
	}
	if wres.out != "" {
		t.Errorf("worker wrote to stdout: %q", wres.out)
	}
}

// workerEnv configures `chatfleet worker` against url and upstream, with
// no health endpoint.
func workerEnv(t *testing.T, url, upstream string) {
	t.Helper()
	useNATS(t, url)
	t.Setenv("CHATFLEET_LLM_BASE_URL", upstream)
	t.Setenv("CHATFLEET_LLM_API_KEY", "")
	t.Setenv("OPENAI_API_KEY", "")
	t.Setenv("OPENAI_BASE_URL", "")
	t.Setenv("CHATFLEET_LOG_FORMAT", "text")
	t.Setenv("CHATFLEET_LOG_LEVEL", "info")
	t.Setenv("CHATFLEET_HTTP_ADDR", "")
	t.Setenv("CHATFLEET_WORKER_ID", "")
	t.Setenv("CHATFLEET_MODEL", testModel)
}

// TestWorkerNeedsUpstream: with neither a base URL nor an API key a
// worker would send every job to api.openai.com without a key; it refuses
// to start and says what to set.
func TestWorkerNeedsUpstream(t *testing.T) {
	f := fleettest.New(t, fleettest.Options{})
	workerEnv(t, f.NATS.ClientURL(), "")
	res := run(fleettest.Context(t, 30*time.Second), "", "worker")
	if res.code != 2 {
		t.Errorf("worker without upstream: %v; want exit 2", res)
	}
	for _, want := range []string{"no upstream configured", "CHATFLEET_LLM_BASE_URL", "OPENAI_API_KEY"} {
		if !strings.Contains(res.err, want) {
			t.Errorf("stderr does not say %q:\n%s", want, res.err)
		}
	}
}

// TestWorkerLogsUpstream: a worker logs where its jobs go — base URL with
// credentials redacted, model, whether a key is set — at start.
func TestWorkerLogsUpstream(t *testing.T) {
	f := fleettest.New(t, fleettest.Options{})
	base := strings.Replace(f.LLM.URL(), "http://", "http://proxyuser:proxy-pass-5c1e@", 1) + "?api-key=query-key-77ad"
	workerEnv(t, f.NATS.ClientURL(), base)
	ctx := fleettest.Context(t, 30*time.Second)
	wctx, stop := context.WithCancel(context.Background())
	defer stop()
	w := start(wctx, "worker")
	w.waitErr(t, ctx, "msg=upstream")
	stop()
	res := w.wait(t, 30*time.Second)
	redacted := strings.Replace(f.LLM.URL(), "http://", "http://proxyuser:xxxxx@", 1) + "?api-key=xxxxx"
	for _, want := range []string{`base_url="` + redacted + `"`, "model=" + testModel, "api_key=none"} {
		if !strings.Contains(res.err, want) {
			t.Errorf("log lacks %q:\n%s", want, res.err)
		}
	}
	for _, secret := range []string{"proxy-pass-5c1e", "query-key-77ad"} {
		if strings.Contains(res.err, secret) {
			t.Errorf("log holds %s:\n%s", secret, res.err)
		}
	}
}

// TestWorkerWaitsForNATS: a worker whose NATS is not up says so at once,
// with the URL's password redacted and the reason, and starts once the
// server is there.
func TestWorkerWaitsForNATS(t *testing.T) {
	const password = "nats-pw-0b7d"
	addr := freeAddr(t)
	upstream := fleettest.New(t, fleettest.Options{}).LLM // its NATS is not the one the worker waits for
	workerEnv(t, "nats://bob:"+password+"@"+addr, upstream.URL())
	ctx := fleettest.Context(t, 30*time.Second)
	// The first line says why: the reason is known before the next one,
	// 30s later.
	w, stop, line := waitingWorker(t, ctx, "cannot reach NATS")
	if !strings.Contains(line, "url=nats://bob:xxxxx@"+addr) || !strings.Contains(line, `err="dial tcp `+addr+`: connect: connection refused"`) ||
		strings.Contains(w.err.String(), password) {
		t.Errorf("waiting log line: %s\nlog:\n%s", line, w.err.String())
	}
	natstest.RunServerAt(t, addr, t.TempDir()) // no auth: the credentials are accepted as they are
	w.waitErr(t, ctx, "worker started")
	stop()
	res := w.wait(t, 30*time.Second)
	if res.code != 0 || !strings.Contains(res.err, "connected to NATS") || strings.Contains(res.err, password) {
		t.Errorf("worker: %v", res)
	}
}

// TestWorkerRefusedByNATS: a worker whose NATS server refuses its
// credentials says so at once, as a refusal with the server's reason (the
// password redacted), keeps trying, and starts once a server accepts it.
func TestWorkerRefusedByNATS(t *testing.T) {
	const password = "wrong-pw-5e21"
	addr := freeAddr(t)
	upstream := fleettest.New(t, fleettest.Options{}).LLM
	strict, err := natsserver.Start(natsserver.Config{Listen: addr, StoreDir: t.TempDir(), Tune: func(o *server.Options) {
		o.Username, o.Password = "bob", "the-right-one"
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(strict.Shutdown)
	workerEnv(t, "nats://bob:"+password+"@"+addr, upstream.URL())
	ctx := fleettest.Context(t, 30*time.Second)
	w, stop, line := waitingWorker(t, ctx, "NATS refused the connection")
	if !strings.Contains(line, "url=nats://bob:xxxxx@"+addr) || !strings.Contains(line, `err="nats: Authorization Violation"`) ||
		strings.Contains(w.err.String(), "cannot reach") || strings.Contains(w.err.String(), password) {
		t.Errorf("refused log line: %s\nlog:\n%s", line, w.err.String())
	}
	// The server that refused goes; one that accepts anyone comes up at its
	// address: the worker has not given up.
	strict.Shutdown()
	natstest.RunServerAt(t, addr, t.TempDir())
	w.waitErr(t, ctx, "worker started")
	stop()
	if res := w.wait(t, 30*time.Second); res.code != 0 || strings.Contains(res.err, password) {
		t.Errorf("worker: %v", res)
	}
}

// waitingWorker starts `chatfleet worker`, waiting for its NATS, and
// returns it once its log says s, with the first line that says it; stop
// stops it (the test stops it at its end in any case).
func waitingWorker(t *testing.T, ctx context.Context, s string) (w *running, stop context.CancelFunc, line string) {
	t.Helper()
	wctx, stop := context.WithCancel(context.Background())
	w = start(wctx, "worker")
	t.Cleanup(func() {
		stop()
		w.wait(t, 30*time.Second)
	})
	w.waitErr(t, ctx, s)
	for _, line := range strings.Split(w.err.String(), "\n") {
		if strings.Contains(line, s) {
			return w, stop, line
		}
	}
	return w, stop, ""
}

// TestWorkerHTTPAddrInUse: a taken health address fails the start and
// names the variable to change.
func TestWorkerHTTPAddrInUse(t *testing.T) {
	f := fleettest.New(t, fleettest.Options{})
	workerEnv(t, f.NATS.ClientURL(), f.LLM.URL())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	t.Setenv("CHATFLEET_HTTP_ADDR", ln.Addr().String())
	res := run(fleettest.Context(t, 30*time.Second), "", "worker")
	if res.code != 1 || !strings.Contains(res.err, "address already in use") || !strings.Contains(res.err, "set CHATFLEET_HTTP_ADDR") {
		t.Errorf("worker on a taken address: %v", res)
	}
}

// TestModelNotAllowed: a worker (or dev) whose default model is not in its
// own allow-list would refuse every job that names no model: it refuses
// to start instead (exit 2), naming both settings.
func TestModelNotAllowed(t *testing.T) {
	f := fleettest.New(t, fleettest.Options{})
	ctx := fleettest.Context(t, 30*time.Second)
	for _, cmd := range []string{"worker", "dev"} {
		if cmd == "dev" {
			devEnv(t)
		} else {
			workerEnv(t, f.NATS.ClientURL(), f.LLM.URL())
		}
		t.Setenv("CHATFLEET_MODEL", testModel)
		t.Setenv("CHATFLEET_ALLOWED_MODELS", "model-a,model-b")
		res := run(ctx, "", cmd)
		want := "CHATFLEET_MODEL=" + testModel + " is not in CHATFLEET_ALLOWED_MODELS=model-a,model-b: every job that names no model would be refused"
		if res.code != 2 || !strings.Contains(res.err, want) || strings.Contains(res.err, "worker started") {
			t.Errorf("%s: %v; want exit 2 and %s", cmd, res, want)
		}
	}
}
