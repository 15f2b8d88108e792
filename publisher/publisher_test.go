package publisher_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/topology"
	"github.com/chatfleet/chatfleet/worker"
)

func userJob(prompt string) protocol.Job {
	return protocol.Job{Model: "m", Messages: []protocol.Message{{Role: protocol.RoleUser, Content: protocol.TextContent(prompt)}}}
}

// ensureTopology creates the streams without starting a worker.
func ensureTopology(t *testing.T, f *fleettest.Fleet) *topology.Topology {
	t.Helper()
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	top, err := topology.Ensure(context.Background(), js, f.Topology)
	if err != nil {
		t.Fatal(err)
	}
	return top
}

func TestSubmitRejectsInvalidJob(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	top := ensureTopology(t, f)
	ctx := fleettest.Context(t, 10*time.Second)

	_, err := f.Pub.Submit(ctx, protocol.Job{Tenant: "acme"})
	var jerr *publisher.JobError
	if !errors.Is(err, publisher.ErrInvalidJob) || !errors.As(err, &jerr) || jerr.Err.Field != "messages" {
		t.Fatalf("err = %v, want ErrInvalidJob naming messages", err)
	}
	_, err = f.Pub.Submit(ctx, protocol.Job{ID: "bad.id", Messages: userJob("x").Messages})
	if !errors.As(err, &jerr) || jerr.Err.Field != "id" {
		t.Fatalf("err = %v, want an invalid id", err)
	}
	info, err := top.Jobs.Info(ctx)
	if err != nil || info.State.Msgs != 0 {
		t.Errorf("invalid jobs must not be published: %d msgs, %v", info.State.Msgs, err)
	}
}

func TestSubmitQueueFull(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{Topology: topology.Config{QueueLimit: 2}})
	ensureTopology(t, f)
	ctx := fleettest.Context(t, 10*time.Second)
	for i := range 2 {
		r, err := f.Pub.Submit(ctx, userJob("queued"))
		if err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
		r.Stop()
	}
	_, err := f.Pub.Submit(ctx, userJob("one too many"))
	if !errors.Is(err, publisher.ErrQueueFull) {
		t.Fatalf("err = %v, want ErrQueueFull", err)
	}
}

func TestDuplicateSubmitIsStoredOnce(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	f.StartWorker(nil)
	ctx := fleettest.Context(t, 20*time.Second)
	job := userJob("same request twice")
	job.ID = "dup-1"
	job.Cache = protocol.Bool(false)
	first, err := f.Pub.Complete(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	second, err := f.Pub.Complete(ctx, job) // a producer retrying its submit
	if err != nil {
		t.Fatal(err)
	}
	if f.LLM.Calls() != 1 {
		t.Errorf("upstream calls = %d, want 1: a resubmitted ID is stored once", f.LLM.Calls())
	}
	if first.Content != second.Content || second.Worker != first.Worker {
		t.Errorf("the resubmit reads the first reply: %+v vs %+v", first, second)
	}
}

func TestCancelAfterFinish(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	f.StartWorker(nil)
	ctx := fleettest.Context(t, 20*time.Second)
	ans, err := f.Pub.Complete(ctx, userJob("quick"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Pub.Cancel(ctx, ans.Tenant, ans.ID); !errors.Is(err, publisher.ErrAlreadyFinished) {
		t.Errorf("Cancel after done = %v, want ErrAlreadyFinished", err)
	}
}

func TestWaitTimeoutWithoutDeadline(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	ensureTopology(t, f) // no worker: nothing ever answers
	pub, err := publisher.New(natstest.Connect(t, f.NATS.ClientURL()), publisher.WithWaitTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	r, err := pub.Submit(context.Background(), userJob("nobody home"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	if _, err := r.Next(context.Background()); !errors.Is(err, publisher.ErrTimeout) {
		t.Errorf("Next = %v, want ErrTimeout", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	nc := natstest.Connect(t, f.NATS.ClientURL())
	for _, opt := range []publisher.Option{publisher.WithPrefix("a b"), publisher.WithWaitTimeout(0), publisher.WithIdleProbe(-1)} {
		if _, err := publisher.New(nc, opt); !errors.Is(err, publisher.ErrInvalidOption) {
			t.Errorf("err = %v, want ErrInvalidOption", err)
		}
	}
}

// TestErrorEventBecomesJobError: an upstream refusal reaches Complete as a
// *JobError with the upstream's status.
func TestErrorEventBecomesJobError(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithScript(func(llmtest.Request) llmtest.Reply {
		return llmtest.Reply{Status: 400, Message: "model does not exist"}
	})}})
	f.StartWorker(func(c *worker.Config) { c.LLM.MaxRetries = -1 })
	ctx := fleettest.Context(t, 20*time.Second)
	_, err := f.Pub.Complete(ctx, userJob("x"))
	var jerr *publisher.JobError
	if !errors.Is(err, publisher.ErrUpstream) || !errors.As(err, &jerr) {
		t.Fatalf("err = %v, want an upstream JobError", err)
	}
	if jerr.Code() != protocol.CodeUpstreamError || jerr.Err.Status != 400 || jerr.Err.Message != "model does not exist" {
		t.Errorf("error = %+v", jerr.Err)
	}
}

// TestSubmitDuplicateID: a job whose ID an earlier request used gets, on
// the shared reply subject, the earlier reply's events (even ones still
// being written) and then its own duplicate_id error; its reader skips
// the earlier request's events (marked with that job's sequence) and takes
// the error whatever its seq, never the earlier answer.
func TestSubmitDuplicateID(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	top := ensureTopology(t, f)
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	ctx := fleettest.Context(t, 10*time.Second)
	store := func(jobSeq string, ev protocol.Event) {
		ev.V, ev.ID = 1, "reused"
		msg := nats.NewMsg("chat.write.default.reused")
		msg.Data, _ = ev.Marshal()
		msg.Header.Set(protocol.HeaderJobSeq, jobSeq)
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	// The earlier request's reply so far, as a worker stored it.
	store("999", protocol.Event{Seq: 1, Type: protocol.EventMeta, Role: protocol.RoleLeader})
	store("999", protocol.Event{Seq: 2, Type: protocol.EventChunk, Content: "the earlier "})

	job := userJob("a new job, an old ID")
	job.ID = "reused"
	r, err := f.Pub.Submit(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	info, err := top.Jobs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The earlier request goes on, then ends; then what a worker stores
	// for the new job (there is none in this test).
	store("999", protocol.Event{Seq: 3, Type: protocol.EventChunk, Content: "answer"})
	store("999", protocol.Event{Seq: 4, Type: protocol.EventDone, FinishReason: "stop"})
	store(strconv.FormatUint(info.State.LastSeq, 10), protocol.Event{Seq: 5, Type: protocol.EventError,
		Error: &protocol.Error{Code: protocol.CodeDuplicateID, Message: "used before"}})
	_, err = r.Collect(ctx)
	var jerr *publisher.JobError
	if !errors.As(err, &jerr) || jerr.Err.Code != protocol.CodeDuplicateID {
		t.Fatalf("err = %v, want duplicate_id", err)
	}
}

// TestEventsOfOldWorkers: events without the job-sequence header, as
// workers older than it store them, are read as the job's own.
func TestEventsOfOldWorkers(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	ensureTopology(t, f)
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	ctx := fleettest.Context(t, 10*time.Second)
	job := userJob("answered by an old worker")
	job.ID = "old-worker"
	r, err := f.Pub.Submit(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	for _, ev := range []protocol.Event{
		{Seq: 1, Type: protocol.EventMeta, Role: protocol.RoleLeader},
		{Seq: 2, Type: protocol.EventChunk, Content: "old but fine"},
		{Seq: 3, Type: protocol.EventDone, FinishReason: "stop"},
	} {
		ev.V, ev.ID = 1, job.ID
		b, _ := ev.Marshal()
		if _, err := js.Publish(ctx, "chat.write.default.old-worker", b); err != nil {
			t.Fatal(err)
		}
	}
	if ans, err := r.Collect(ctx); err != nil || ans.Content != "old but fine" {
		t.Fatalf("answer %+v, %v", ans, err)
	}
}
