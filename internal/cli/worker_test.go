package cli_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
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
