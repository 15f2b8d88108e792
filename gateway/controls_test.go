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
	sub, err := natsConn(t, b).ChanSubscribe(b.f.Topology.WithDefaults().Names.AllJobs(), jobs)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

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
	case <-ctx.Done():
		t.Fatal("no job published")
	}
	if job.ID != "controlled-1" || job.Priority != protocol.PriorityHigh || job.Dedupe == nil || *job.Dedupe ||
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
