package isolation_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/gateway"
	"github.com/chatfleet/chatfleet/internal/config"
	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/protocol"
)

// gatewayWorks runs a gateway with the identity chatfleet auth generated
// for it, its keys in the API keys bucket: everything it serves works
// end to end, and what is not its job is refused.
func gatewayWorks(t *testing.T, f *fleet) {
	ctx := fleettest.Context(t, 30*time.Second)
	js, _ := jetstream.New(f.ops)
	keys, err := js.KeyValue(ctx, f.names.APIKeysBucket())
	if err != nil {
		t.Fatal(err)
	}
	key, err := gateway.AddKey(ctx, keys, tenantA) // as the operators
	if err != nil {
		t.Fatal(err)
	}
	env := f.envs["gateway"]
	env.GatewayAddr, env.GatewayKeys = "127.0.0.1:0", config.GatewayKeysBucket
	cfg, err := env.Gateway(fleettest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	cfg.ResumeGrace = 100 * time.Millisecond
	gw, err := gateway.New(cfg, f.connect(t, "gateway"))
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(ctx); err != nil {
		t.Fatalf("the gateway with its own identity: %v", err)
	}
	t.Cleanup(func() {
		if err := gw.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	g := &gatewayClient{url: "http://" + gw.Addr().String() + "/v1", key: key}

	t.Run("models", func(t *testing.T) {
		if code, body := g.do(t, ctx, "GET", "/models", "", nil); code != 200 || !strings.Contains(body, `"id":"m"`) {
			t.Fatalf("models: %d %s", code, body)
		}
	})
	t.Run("answer, then its stream resumed", func(t *testing.T) {
		code, body := g.do(t, ctx, "POST", "/chat/completions", `{"model":"m","messages":[{"role":"user","content":"gateway hello"}]}`,
			http.Header{gateway.HeaderRequestID: {"g-1"}})
		if code != 200 || !strings.Contains(body, `"chat.completion"`) {
			t.Fatalf("completion: %d %s", code, body)
		}
		code, body = g.do(t, ctx, "GET", "/chat/completions/chatcmpl-g-1/stream", "", http.Header{"Last-Event-ID": {"1"}})
		if code != 200 || !strings.HasSuffix(strings.TrimSpace(body), "data: [DONE]") {
			t.Fatalf("resume: %d %s", code, body)
		}
	})
	t.Run("a client that goes away cancels", func(t *testing.T) {
		prompt := "hold:gateway:g-2"
		t.Cleanup(func() { f.gates.open(prompt) })
		streamCtx, drop := context.WithCancel(ctx)
		resp := g.open(t, streamCtx, `{"model":"m","stream":true,"messages":[{"role":"user","content":"`+prompt+`"}]}`, "g-2")
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() && !strings.Contains(sc.Text(), `"content":"`) { // the first token
		}
		drop()
		resp.Body.Close()
		fleettest.Poll(t, ctx, "the request cancelled", func() bool {
			ev, found, _ := f.opsPub.LastEvent(ctx, tenantA, "g-2")
			return found && ev.Type == protocol.EventCancelled
		})
	})
	t.Run("refused", func(t *testing.T) {
		n := f.names
		for name, try := range map[string]func(*nats.Conn) error{
			"forge a reply event":      func(nc *nats.Conn) error { return nc.Publish(n.ReplyWrite(tenantA, "g-1"), []byte(`{}`)) },
			"forge a live reply event": func(nc *nats.Conn) error { return nc.Publish(n.Reply(tenantA, "g-1"), []byte(`{}`)) },
			"store an API key":         func(nc *nats.Conn) error { return nc.Publish("$KV."+n.APIKeysBucket()+".x", []byte(tenantA)) },
			"write the tenants bucket": func(nc *nats.Conn) error { return nc.Publish("$KV."+n.TenantsBucket()+"."+tenantA, []byte(`{}`)) },
			"poison the cache":         func(nc *nats.Conn) error { return nc.Publish("$KV."+n.CacheBucket()+".x.y", []byte(`{}`)) },
			"delete the jobs stream": func(nc *nats.Conn) error {
				return nc.PublishRequest("$JS.API.STREAM.DELETE."+n.JobsStream(), nc.NewInbox(), nil)
			},
			"a worker's control": func(nc *nats.Conn) error { return nc.Publish(n.Control("w1"), []byte(`{}`)) },
			"pull the workers' jobs": func(nc *nats.Conn) error {
				return nc.PublishRequest("$JS.API.CONSUMER.MSG.NEXT."+n.JobsStream()+"."+n.QueueConsumer(tenantA, "normal"), nc.NewInbox(), nil)
			},
			"read the stored job queue":    func(nc *nats.Conn) error { _, err := nc.SubscribeSync(n.AllJobs()); return err },
			"read the queue announcements": func(nc *nats.Conn) error { _, err := nc.SubscribeSync(n.QueuedJobs()); return err },
		} {
			t.Run(name, func(t *testing.T) {
				errs := make(errorsOf, 8)
				nc := f.connect(t, "gateway", errs.handler())
				if err := try(nc); err != nil {
					t.Fatal(err)
				}
				if err := nc.Flush(); err != nil {
					t.Fatal(err)
				}
				if refusal := errs.refusal(t); !isPermissionViolation(refusal) {
					t.Fatalf("the server answered %v, want a permissions violation", refusal)
				}
			})
		}
	})
}

// gatewayClient calls the gateway with a tenant's API key.
type gatewayClient struct{ url, key string }

func (g *gatewayClient) request(t *testing.T, ctx context.Context, method, path, body string, h http.Header) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, g.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+g.key)
	req.Header.Set("Content-Type", "application/json")
	return req
}

// do sends a request and reads the whole answer.
func (g *gatewayClient) do(t *testing.T, ctx context.Context, method, path, body string, h http.Header) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(g.request(t, ctx, method, path, body, h))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// open starts a streamed completion with request ID id.
func (g *gatewayClient) open(t *testing.T, ctx context.Context, body, id string) *http.Response {
	t.Helper()
	resp, err := http.DefaultClient.Do(g.request(t, ctx, "POST", "/chat/completions", body, http.Header{gateway.HeaderRequestID: {id}}))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		resp.Body.Close()
		t.Fatalf("stream: %d", resp.StatusCode)
	}
	return resp
}
