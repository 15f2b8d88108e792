package worker_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
)

// TestHTTPServesNoPromptsOrAnswers: the worker's HTTP endpoints listen
// only where CHATFLEET_HTTP_ADDR says, serve /healthz, /readyz and
// /metrics and nothing else, and after a job none of them holds its
// prompt, its answer or its request ID.
func TestHTTPServesNoPromptsOrAnswers(t *testing.T) {
	t.Parallel()
	f, w := metricsFleet(t, "http-test", nil)
	if host, _, _ := net.SplitHostPort(w.HTTPAddr().String()); host != "127.0.0.1" {
		t.Fatalf("listening on %s, want the loopback address configured", w.HTTPAddr())
	}
	const prompt = "quokka-saffron-8812 private question"
	job := userJob(prompt)
	job.ID = "private-request-4471"
	ans, err := f.Pub.Complete(fleettest.Context(t, 30*time.Second), job)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + w.HTTPAddr().String()
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200, "/": 404, "/debug/pprof/": 404, "/status": 404} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s = %d, want %d", path, resp.StatusCode, want)
		}
		for name, secret := range map[string]string{"prompt": "quokka-saffron", "answer": ans.Content, "request ID": job.ID} {
			if strings.Contains(string(body), secret) {
				t.Errorf("%s holds the job's %s", path, name)
			}
		}
	}
}
