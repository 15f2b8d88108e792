package cli_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/worker"
)

// TestDLQ: a job refused by a worker (its model is not allowed there) is
// listed, shown, and replayed under a new ID once a worker that allows it
// runs; the replay is answered and the dead letter is gone.
func TestDLQ(t *testing.T) {
	f := fleettest.New(t, fleettest.Options{})
	refusing := f.StartWorker(func(c *worker.Config) {
		c.Manager.DefaultModel = testModel
		c.Manager.Limits.AllowedModels = []string{testModel}
	})
	useNATS(t, f.NATS.ClientURL())
	ctx := fleettest.Context(t, 30*time.Second)
	job := userJob("acme", "refused-1", "dead letter me")
	job.Model = "other-model"
	if _, err := f.Pub.Complete(ctx, job); err == nil {
		t.Fatal("the model allow-list did not refuse the job")
	}

	res := run(ctx, "", "dlq", "ls", "--json")
	if res.code != 0 {
		t.Fatalf("dlq ls: %v", res)
	}
	checkJSONConvention(t, res.out)
	var row struct {
		Seq                                  uint64
		Tenant, Request, Code, Field, Reason string
		Deliveries                           int
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(res.out)), &row); err != nil {
		t.Fatalf("dlq ls --json: %v in %q", err, res.out)
	}
	if row.Seq == 0 || row.Tenant != "acme" || row.Request != "refused-1" || row.Code != "invalid_request" || row.Field != "model" || row.Deliveries != 1 {
		t.Errorf("row = %+v", row)
	}
	if res := run(ctx, "", "dlq", "ls"); res.code != 0 || !strings.Contains(res.out, "refused-1") || !strings.Contains(res.out, "REASON") {
		t.Errorf("dlq ls: %v", res)
	}
	if res := run(ctx, "", "dlq", "ls", "--tenant", "nobody"); res.code != 0 || res.out != "no dead letters\n" {
		t.Errorf("dlq ls --tenant nobody: %v", res)
	}
	seq := jsonNumber(row.Seq)
	if res := run(ctx, "", "dlq", "show", seq); res.code != 0 || !strings.Contains(res.out, "not allowed") || !strings.Contains(res.out, `"model": "other-model"`) {
		t.Errorf("dlq show: %v", res)
	}

	// A worker that allows the model replaces the refusing one.
	fleettest.StopWorker(t, refusing)
	f.StartWorker(func(c *worker.Config) { c.Manager.DefaultModel = testModel })
	res = run(ctx, "", "dlq", "replay", seq)
	if res.code != 0 || !strings.Contains(res.out, "replayed dead letter "+seq+" as acme/") {
		t.Fatalf("dlq replay: %v", res)
	}
	newID := strings.Fields(strings.TrimPrefix(res.out[strings.Index(res.out, "acme/"):], "acme/"))[0]
	newID = strings.TrimSuffix(newID, ";")
	if newID == "refused-1" {
		t.Fatalf("a replay must use a new request ID")
	}
	reply, err := f.Pub.Attach(ctx, "acme", newID)
	if err != nil {
		t.Fatal(err)
	}
	defer reply.Stop()
	ans, err := reply.Collect(ctx)
	if err != nil || !strings.Contains(ans.Content, "dead letter me") {
		t.Errorf("replayed job: %+v, %v", ans, err)
	}
	if res := run(ctx, "", "dlq", "show", seq); res.code != 1 || !strings.Contains(res.err, "no dead letter") {
		t.Errorf("the replayed dead letter is still there: %v", res)
	}
}

func TestDLQUsage(t *testing.T) {
	useNATS(t, "nats://127.0.0.1:1") // nothing listens: a connect would fail with 1
	ctx := fleettest.Context(t, 10*time.Second)
	for _, args := range [][]string{{"dlq"}, {"dlq", "peek"}, {"dlq", "show"}, {"dlq", "show", "x"}, {"dlq", "replay", "0"}, {"dlq", "ls", "extra"}} {
		if res := run(ctx, "", args...); res.code != 2 {
			t.Errorf("%v: %v, want exit 2", args, res)
		}
	}
	// A bad tenant names its offending character, as itself.
	if res := run(ctx, "", "dlq", "ls", "--tenant", "zoë"); res.code != 2 || !strings.Contains(res.err, `--tenant: subjects: invalid tenant "zoë": contains 'ë'`) {
		t.Errorf("dlq ls --tenant zoë: %v", res)
	}
}

func jsonNumber(n uint64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
