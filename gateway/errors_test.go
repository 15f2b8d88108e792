package gateway_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/chatfleet/chatfleet/gateway"
	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/topology"
)

// apiError is the SDK's error for err, or fails the test.
func apiError(t *testing.T, err error) *openai.Error {
	t.Helper()
	var e *openai.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want an API error", err)
	}
	return e
}

// TestErrorMapping: every failure reaches an OpenAI client as the status
// and code it expects, in OpenAI's error shape.
func TestErrorMapping(t *testing.T) {
	t.Parallel()
	stall, release := fleettest.Stalled()
	defer release()
	b := setup(t, fleettest.Options{LLM: []llmtest.Option{stall}, Topology: topology.Config{QueueLimit: 2}}, nil)
	ctx := fleettest.Context(t, 60*time.Second)
	client := b.sdk("")

	// 400, naming the field.
	_, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: testModel, Messages: []openai.ChatCompletionMessageParamUnion{}})
	if e := apiError(t, err); e.StatusCode != 400 || e.Param != "messages" || e.Type != "invalid_request_error" {
		t.Errorf("no messages: %d %q %q", e.StatusCode, e.Param, e.Type)
	}
	// 404: a model no worker serves (the worker refuses it).
	params := userParams("other model")
	params.Model = "other-model"
	_, err = client.Chat.Completions.New(ctx, params)
	if e := apiError(t, err); e.StatusCode != 404 || e.Code != "model_not_found" {
		t.Errorf("unknown model: %d %q", e.StatusCode, e.Code)
	}
	// 504: the job's own timeout, the upstream stalled.
	_, err = client.Chat.Completions.New(ctx, userParams("too slow"), option.WithHeader(gateway.HeaderTimeoutMS, "300"))
	if e := apiError(t, err); e.StatusCode != 504 || e.Code != string(protocol.CodeTimeout) {
		t.Errorf("timeout: %d %q", e.StatusCode, e.Code)
	}
	// 429 with Retry-After: the queue is full (one job held, one queued).
	// The timed-out job is acknowledged after its answer: wait until it
	// has left the queue.
	b.f.WaitConsumer(t, ctx, "timed-out job acknowledged", func(info *jetstream.ConsumerInfo) bool {
		return info.NumPending == 0 && info.NumAckPending == 0
	})
	for _, p := range []string{"hold 1", "hold 2"} {
		r, err := b.f.Pub.Submit(ctx, protocol.Job{Model: testModel, Messages: []protocol.Message{{Role: "user", Content: protocol.TextContent(p)}}})
		if err != nil {
			t.Fatal(err)
		}
		r.Stop()
	}
	var resp *http.Response
	_, err = client.Chat.Completions.New(ctx, userParams("one too many"), option.WithResponseInto(&resp))
	if e := apiError(t, err); e.StatusCode != 429 || e.Code != string(protocol.CodeQueueFull) || e.Response.Header.Get("Retry-After") == "" {
		t.Errorf("queue full: %d %q Retry-After %q", e.StatusCode, e.Code, e.Response.Header.Get("Retry-After"))
	}
}

// TestNoWorkers: with no worker running nothing would answer: 503 at
// once, not a request waiting in the queue.
func TestNoWorkers(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	if _, err := topology.Ensure(fleettest.Context(t, 10*time.Second), jsOf(t, f), f.Topology); err != nil {
		t.Fatal(err)
	}
	b := bundle{f: f}.withGateway(t, func(c *gateway.Config) { c.WorkersWait = 200 * time.Millisecond })
	client := b.sdk("")
	_, err := client.Chat.Completions.New(fleettest.Context(t, 10*time.Second), userParams("anyone?"))
	if e := apiError(t, err); e.StatusCode != 503 || e.Code != "no_workers" || e.Response.Header.Get("Retry-After") == "" {
		t.Errorf("no workers: %d %q", e.StatusCode, e.Code)
	}
}

// TestAPIKeys: with keys, a request needs one; the key's tenant is the
// job's; keys are kept hashed.
func TestAPIKeys(t *testing.T) {
	t.Parallel()
	key, line, err := gateway.NewKey("acme")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(line, key) {
		t.Fatal("the key file line holds the key itself")
	}
	keys, err := gateway.ReadKeys(strings.NewReader("# tenants\n" + line + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	b := setup(t, fleettest.Options{}, func(c *gateway.Config) { c.Keys = keys })
	ctx := fleettest.Context(t, 30*time.Second)
	for _, k := range []string{"", "cf-wrong"} {
		client := b.sdk(k)
		if k == "" {
			client = openai.NewClient(option.WithBaseURL(b.url), option.WithMaxRetries(0), option.WithHeaderDel("Authorization"))
		}
		_, err := client.Chat.Completions.New(ctx, userParams("let me in"))
		if e := apiError(t, err); e.StatusCode != 401 || e.Code != "invalid_api_key" {
			t.Errorf("key %q: %d %q", k, e.StatusCode, e.Code)
		}
	}
	var resp *http.Response
	acme := b.sdk(key)
	if _, err := acme.Chat.Completions.New(ctx, userParams("acme here"), option.WithResponseInto(&resp)); err != nil {
		t.Fatal(err)
	}
	last, found, err := b.f.Pub.LastEvent(ctx, "acme", resp.Header.Get(gateway.HeaderRequestID))
	if err != nil || !found || last.Type != protocol.EventDone {
		t.Errorf("the job is not acme's: %+v %v %v", last, found, err)
	}
}

// TestDuplicateRequestID: a retry with the same request ID reads the first
// answer; an ID whose earlier request's reply is still kept (after the
// duplicate window) gets 409, never a stuck request.
func TestDuplicateRequestID(t *testing.T) {
	t.Parallel()
	b := setup(t, fleettest.Options{}, nil)
	ctx := fleettest.Context(t, 30*time.Second)
	client := b.sdk("")
	withID := option.WithHeader(gateway.HeaderRequestID, "retry-me")
	first, err := client.Chat.Completions.New(ctx, userParams("idempotent"), withID)
	if err != nil {
		t.Fatal(err)
	}
	again, err := client.Chat.Completions.New(ctx, userParams("idempotent"), withID)
	if err != nil || again.ID != first.ID || again.Choices[0].Message.Content != first.Choices[0].Message.Content || b.f.LLM.Calls() != 1 {
		t.Fatalf("retry: %+v, %v, %d calls", again, err, b.f.LLM.Calls())
	}
	// An earlier job under "reused", published past the duplicate window
	// (a message ID of its own stands in for the window).
	job, _ := json.Marshal(protocol.Job{ID: "reused", Model: testModel, Messages: []protocol.Message{{Role: "user", Content: protocol.TextContent("earlier")}}})
	msg := nats.NewMsg("chat.jobs.default")
	msg.Data = job
	msg.Header.Set(nats.MsgIdHdr, "reused-earlier")
	if _, err := jsOf(t, b.f).PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
	fleettest.Poll(t, ctx, "the earlier job ended", func() bool {
		ev, found, _ := b.f.Pub.LastEvent(ctx, "default", "reused")
		return found && ev.Type.Terminal()
	})
	_, err = client.Chat.Completions.New(ctx, userParams("later"), option.WithHeader(gateway.HeaderRequestID, "reused"))
	if e := apiError(t, err); e.StatusCode != 409 || e.Code != string(protocol.CodeDuplicateID) {
		t.Errorf("reused ID: %d %q", e.StatusCode, e.Code)
	}
}

func jsOf(t *testing.T, f *fleettest.Fleet) jetstream.JetStream {
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	return js
}
