package gateway_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/openai/openai-go/v3/option"

	"github.com/chatfleet/chatfleet/gateway"
	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/protocol"
)

// TestControlHeaders: chatfleet's request headers become the fields of the
// job the gateway publishes, and a bad value is a 400 naming the header.
func TestControlHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t, fleettest.Options{}, nil)
	ctx := fleettest.Context(t, 30*time.Second)
	jobs := make(chan *nats.Msg, 4)
	nc, names := natsConn(t, b), b.f.Topology.WithDefaults().Names
	for _, subject := range []string{names.AllJobs(), names.AllPriorityJobs()} { // normal, and high or low
		if _, err := nc.ChanSubscribe(subject, jobs); err != nil {
			t.Fatal(err)
		}
	}

	client := b.sdk("")
	if _, err := client.Chat.Completions.New(ctx, userParams("controlled"),
		option.WithHeader(gateway.HeaderPriority, " High"),
		option.WithHeader(gateway.HeaderDedupe, "false"),
		option.WithHeader(gateway.HeaderCache, "false"),
		option.WithHeader(gateway.HeaderTimeoutMS, "20000"),
		option.WithHeader(gateway.HeaderQueueTimeoutMS, "15000"),
		option.WithHeader(gateway.HeaderRequestID, "controlled-1")); err != nil {
		t.Fatal(err)
	}
	var job protocol.Job
	select {
	case m := <-jobs:
		if err := json.Unmarshal(m.Data, &job); err != nil {
			t.Fatal(err)
		}
		if m.Subject != names.PriorityJobs(protocol.DefaultTenant, string(protocol.PriorityHigh)) {
			t.Errorf("the job went to %s, not the tenant's high-priority subject", m.Subject)
		}
	case <-ctx.Done():
		t.Fatal("no job published")
	}
	// The priority travels as the subject, never in the body (workers of
	// before priorities would forward it upstream).
	if job.ID != "controlled-1" || job.Priority != "" || job.Dedupe == nil || *job.Dedupe ||
		job.Cache == nil || *job.Cache || job.TimeoutMS != 20000 || job.QueueTimeoutMS != 15000 {
		t.Errorf("the published job does not carry the headers' controls: %+v", job)
	}

	for header, value := range map[string]string{
		gateway.HeaderPriority:       "urgent",
		gateway.HeaderDedupe:         "maybe",
		gateway.HeaderTimeoutMS:      "-1",
		gateway.HeaderQueueTimeoutMS: "soon",
		gateway.HeaderRequestID:      "no spaces",
	} {
		_, err := client.Chat.Completions.New(ctx, userParams("refused"), option.WithHeader(header, value))
		if e := apiError(t, err); e.StatusCode != 400 || e.Param != header {
			t.Errorf("%s: %q: got %d param %q, want 400 naming the header", header, value, e.StatusCode, e.Param)
		}
	}
	select {
	case m := <-jobs:
		t.Errorf("a refused request published a job: %s", m.Data)
	default:
	}
}
