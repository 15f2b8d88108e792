package manager_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
)

// TestTwoUpstreamsOneKilled: two worker processes route model m2 to two
// upstreams (CHATFLEET_UPSTREAMS); the load spreads over both, and when
// one is killed mid-run every job completes on the other — jobs cut off
// mid-answer start again behind a reset, none is sent to both at once.
func TestTwoUpstreamsOneKilled(t *testing.T) {
	t.Parallel()
	slow := llmtest.WithDelay(0, 10*time.Millisecond)
	a, b := llmtest.New(slow), llmtest.New(slow)
	t.Cleanup(a.Close)
	t.Cleanup(b.Close)
	f := fleettest.New(t, fleettest.Options{})
	ctx := ctxFor(t, 2*time.Minute)
	file := filepath.Join(t.TempDir(), "upstreams.json")
	routes, _ := json.Marshal(map[string]any{"upstreams": []map[string]any{
		{"name": "a", "base_url": a.URL(), "models": []string{"m2"}, "max_streams": 50},
		{"name": "b", "base_url": b.URL(), "models": []string{"m2"}, "max_streams": 50},
	}})
	if err := os.WriteFile(file, routes, 0o600); err != nil {
		t.Fatal(err)
	}
	jobs(t, f)
	for i := range 2 {
		startChildWorker(t, f, fmt.Sprintf("route%d", i), "CHATFLEET_UPSTREAMS="+file, "CHATFLEET_LLM_MAX_RETRIES=1")
	}
	job := func(i int) protocol.Job {
		j := userJob(fmt.Sprintf("spread-%d", i))
		j.Model = "m2"
		return j
	}
	var first []*eventLog
	for i := range 24 {
		first = append(first, submitEvents(t, ctx, f.Pub, job(i)))
	}
	for i, l := range first {
		if end := l.end(t); end.Type != protocol.EventDone {
			t.Fatalf("job %d: %v", i, describeEvents(l.sofar()))
		}
	}
	t.Logf("load spread over two upstreams: a %d calls, b %d calls (default %d)", a.Calls(), b.Calls(), f.LLM.Calls())
	if a.Calls() == 0 || b.Calls() == 0 || f.LLM.Calls() != 0 {
		t.Errorf("calls: a %d, b %d, default %d; want both upstreams used, the default not", a.Calls(), b.Calls(), f.LLM.Calls())
	}

	before, aBefore := b.Calls(), a.Calls()
	var second []*eventLog
	for i := range 24 {
		second = append(second, submitEvents(t, ctx, f.Pub, job(100+i)))
	}
	if err := a.WaitCalls(ctx, aBefore+1); err != nil {
		t.Fatal(err)
	}
	a.Close() // killed mid-run: its streams cut, its address refusing
	for i, l := range second {
		if end := l.end(t); end.Type != protocol.EventDone {
			t.Errorf("job %d after a was killed: %v", i, describeEvents(l.sofar()))
		}
	}
	t.Logf("after a was killed: b answered %d more calls", b.Calls()-before)
}
