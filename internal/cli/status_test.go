package cli_test

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/topology"
	"github.com/chatfleet/chatfleet/worker"
)

// TestStatus: against a fleet of three workers that answered a job and
// its cache hit, status shows the queue, each worker and the fleet's
// ratios, as text and as JSON.
func TestStatus(t *testing.T) {
	f := fleettest.New(t, fleettest.Options{})
	useNATS(t, f.NATS.ClientURL())
	ctx := fleettest.Context(t, 30*time.Second)
	for range 3 {
		f.StartWorker(func(c *worker.Config) { c.Manager.DefaultModel = testModel })
	}
	if _, err := f.Pub.Complete(ctx, userJob("default", "", "warm the cache")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Pub.Complete(ctx, userJob("default", "", "warm the cache")); err != nil { // a cache hit
		t.Fatal(err)
	}

	// Every worker must answer: --wait leaves them time on a busy machine.
	res := run(ctx, "", "status", "--json", "--wait", "2s")
	if res.code != 0 {
		t.Fatalf("status --json: %v", res)
	}
	checkJSONConvention(t, res.out)
	var st struct {
		Prefix string `json:"prefix"`
		Queue  struct {
			Waiting    int `json:"waiting"`
			AckPending int `json:"ack_pending"`
		} `json:"queue"`
		Workers []struct {
			Worker string                               `json:"worker"`
			Slots  map[string]struct{ Used, Total int } `json:"slots"`
			Totals struct {
				Requests  int `json:"requests"`
				CacheHits int `json:"cache_hits"`
			} `json:"totals"`
		} `json:"workers"`
		Fleet struct {
			Workers       int     `json:"workers"`
			CacheHitRatio float64 `json:"cache_hit_ratio"`
		} `json:"fleet"`
		Upstreams []struct {
			Name     string `json:"name"`
			Breakers struct {
				Closed int `json:"closed"`
			} `json:"breakers"`
		} `json:"upstreams"`
	}
	if err := json.Unmarshal([]byte(res.out), &st); err != nil {
		t.Fatalf("%v in %s", err, res.out)
	}
	if st.Prefix != "chat" || st.Fleet.Workers != 3 || len(st.Workers) != 3 {
		t.Fatalf("status = %+v", st)
	}
	requests, hits := 0, 0
	for _, w := range st.Workers {
		if w.Slots["requests"].Total != 64 || w.Slots["llm"].Total != 16 {
			t.Errorf("%s slots = %+v", w.Worker, w.Slots)
		}
		requests += w.Totals.Requests
		hits += w.Totals.CacheHits
	}
	if len(st.Upstreams) != 1 || st.Upstreams[0].Name != protocol.DefaultUpstream || st.Upstreams[0].Breakers.Closed != 3 {
		t.Errorf("upstreams = %+v, want the default with 3 closed breakers", st.Upstreams)
	}
	if requests != 2 || hits != 1 || st.Fleet.CacheHitRatio != 0.5 {
		t.Errorf("requests %d, cache hits %d, ratio %v", requests, hits, st.Fleet.CacheHitRatio)
	}

	res = run(ctx, "", "status", "--wait", "2s")
	if res.code != 0 || !strings.Contains(res.out, "3 workers") || !strings.Contains(res.out, "cache hits 50.0%") ||
		!strings.Contains(res.out, "w1") || !strings.Contains(res.out, "0/64") ||
		!strings.Contains(res.out, "closed 3, open 0, half-open 0") {
		t.Errorf("status: %v\n%s", res, res.out)
	}
}

// snakeCase is the one key convention of chatfleet's JSON output.
var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// checkJSONConvention fails the test for every key of the JSON values in
// out (one or more, one a line) that is not snake_case, and every string
// value that holds a number.
func checkJSONConvention(t *testing.T, out string) {
	t.Helper()
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if !snakeCase.MatchString(k) {
					t.Errorf("key %s.%s is not snake_case", path, k)
				}
				walk(path+"."+k, x)
			}
		case []any:
			for i, x := range v {
				walk(path+"["+strconv.Itoa(i)+"]", x)
			}
		case string:
			if _, err := strconv.ParseFloat(v, 64); err == nil {
				t.Errorf("%s = %q: a number as a string", path, v)
			}
		}
	}
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("not JSON: %v in %s", err, out)
		}
		walk("", v)
	}
}

// TestStatusNoWorkers: with the topology in place and no worker running,
// status shows 0 workers, the queue and the age of the oldest job no
// worker has pulled; once a worker holds the first job, the oldest
// waiting one is the second.
func TestStatusNoWorkers(t *testing.T) {
	stall, release := fleettest.Stalled()
	defer release()
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{stall}})
	useNATS(t, f.NATS.ClientURL())
	ctx := fleettest.Context(t, 30*time.Second)
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	top, err := topology.Ensure(ctx, js, topology.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"queued-1", "queued-2"} {
		reply, err := f.Pub.Submit(ctx, userJob("default", id, "wait for me"))
		if err != nil {
			t.Fatal(err)
		}
		reply.Stop()
	}
	stored := func(seq uint64) time.Time {
		t.Helper()
		m, err := top.Jobs.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		return m.Time.UTC()
	}

	type queue struct {
		Waiting        int        `json:"waiting"`
		AckPending     int        `json:"ack_pending"`
		OldestWaitingS float64    `json:"oldest_waiting_s"`
		Since          *time.Time `json:"oldest_waiting_since"`
	}
	// status runs status --json; wait is its --wait: long enough for a
	// running worker to answer.
	status := func(wait string) (queue, int) {
		t.Helper()
		res := run(ctx, "", "status", "--json", "--wait", wait)
		if res.code != 0 {
			t.Fatalf("status --json: %v", res)
		}
		checkJSONConvention(t, res.out)
		var st struct {
			Queue   queue `json:"queue"`
			Workers []any `json:"workers"`
			Fleet   struct {
				Workers int `json:"workers"`
			} `json:"fleet"`
		}
		if err := json.Unmarshal([]byte(res.out), &st); err != nil {
			t.Fatal(err)
		}
		if st.Fleet.Workers != len(st.Workers) || st.Workers == nil {
			t.Errorf("fleet.workers %d, workers %v", st.Fleet.Workers, st.Workers)
		}
		return st.Queue, st.Fleet.Workers
	}

	q, workers := status("100ms") // no worker runs
	if workers != 0 || q.Waiting != 2 || q.Since == nil || !q.Since.Equal(stored(1)) || q.OldestWaitingS < 0 {
		t.Errorf("no workers: %d workers, queue %+v; want 0 workers, 2 waiting since %s", workers, q, stored(1))
	}
	res := run(ctx, "", "status", "--wait", "100ms")
	if res.code != 0 || !strings.Contains(res.out, "0 workers") || !strings.Contains(res.out, "2 waiting (oldest ") ||
		!strings.Contains(res.out, "no workers answered") {
		t.Errorf("status: %v", res)
	}

	// A worker with one request slot pulls the first job and holds it.
	f.StartWorker(func(c *worker.Config) {
		c.Manager.DefaultModel = testModel
		c.Manager.MaxConcurrentRequests = 1
	})
	if err := f.LLM.WaitCalls(ctx, 1); err != nil {
		t.Fatal(err)
	}
	q, workers = status("2s")
	if workers != 1 || q.Waiting != 1 || q.AckPending != 1 || q.Since == nil || !q.Since.Equal(stored(2)) {
		t.Errorf("one job pulled: %d workers, queue %+v; want 1 waiting since %s (the second job)", workers, q, stored(2))
	}
	release()
	// Once the second job has answered, both were delivered: none waits.
	if last := lastStored(t, ctx, f, "default", "queued-2"); last.Type != protocol.EventDone {
		t.Fatalf("queued-2 ended with %+v", last)
	}
	if q, _ = status("2s"); q.Waiting != 0 || q.Since != nil || q.OldestWaitingS != 0 {
		t.Errorf("empty queue: %+v", q)
	}
}

func TestStatusUsage(t *testing.T) {
	ctx := fleettest.Context(t, 10*time.Second)
	for _, args := range [][]string{{"status", "extra"}, {"status", "--interval", "0s"}, {"status", "--bogus"}} {
		if res := run(ctx, "", args...); res.code != 2 {
			t.Errorf("%v: %v", args, res)
		}
	}
}
