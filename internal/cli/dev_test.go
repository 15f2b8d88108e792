package cli_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
)

// devEnv configures dev mode on free ports and a temporary data directory
// with no upstream, and returns the NATS and health addresses.
func devEnv(t *testing.T) (natsAddr, httpAddr string) {
	t.Helper()
	natsAddr, httpAddr = freeAddr(t), freeAddr(t)
	t.Setenv("CHATFLEET_DEV_LISTEN", natsAddr)
	t.Setenv("CHATFLEET_DEV_DATA_DIR", t.TempDir())
	t.Setenv("CHATFLEET_HTTP_ADDR", httpAddr)
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
	dev.waitErr(t, ctx, "chatfleet dev is up")
	return dev, stop
}

// TestDevSimulatedModel: with no upstream configured, dev runs NATS, a
// worker and the simulated model, says so, serves /healthz and answers
// ask from another client; cancelling its context stops it with 0.
func TestDevSimulatedModel(t *testing.T) {
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

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + httpAddr + "/healthz")
	if err != nil {
		t.Fatalf("healthz on CHATFLEET_HTTP_ADDR: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Errorf("healthz: %d %q", resp.StatusCode, body)
	}

	res := run(ctx, "", "ask", "hello")
	if res.code != 0 {
		t.Fatalf("ask against dev: %v\ndev log:\n%s", res, dev.err.String())
	}
	if !strings.HasPrefix(res.out, `Simulated answer to "hello".`) || !strings.HasSuffix(res.out, ".\n") {
		t.Errorf("ask printed %q, want the simulated answer", res.out)
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

// TestDevGracefulShutdown: stopping dev lets a request in flight finish
// (within CHATFLEET_SHUTDOWN_GRACE) before NATS goes away: the ask still
// gets its whole answer.
func TestDevGracefulShutdown(t *testing.T) {
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
