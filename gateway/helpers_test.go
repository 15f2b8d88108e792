package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/chatfleet/chatfleet/gateway"
	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/worker"
)

const testModel = "test-model"

// bundle is a fleet with a gateway in front of it.
type bundle struct {
	f   *fleettest.Fleet
	gw  *gateway.Gateway
	url string // base URL, …/v1
}

// setup starts NATS, the test upstream, one worker serving testModel and
// a gateway on a free loopback port; change adjusts the gateway's config.
func setup(t *testing.T, opts fleettest.Options, change func(*gateway.Config)) *bundle {
	t.Helper()
	f := fleettest.New(t, opts)
	f.StartWorker(func(c *worker.Config) {
		c.Manager.DefaultModel = testModel
		c.Manager.Limits.AllowedModels = []string{testModel}
	})
	return bundle{f: f}.withGateway(t, change)
}

// withGateway starts another gateway on b's fleet.
func (b bundle) withGateway(t *testing.T, change func(*gateway.Config)) *bundle {
	t.Helper()
	// A loaded test machine may keep a worker from answering the ping
	// within the default second: a false "no workers" is not under test.
	cfg := gateway.Config{Addr: "127.0.0.1:0", Names: b.f.Topology.WithDefaults().Names, Logger: fleettest.Logger(), ResumeSecret: []byte("test secret"),
		WorkersWait: 10 * time.Second}
	if change != nil {
		change(&cfg)
	}
	gw, err := gateway.New(cfg, natstest.Connect(t, b.f.NATS.ClientURL()))
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := gw.Stop(ctx); err != nil {
			t.Errorf("stop gateway: %v", err)
		}
	})
	b.gw, b.url = gw, "http://"+gw.Addr().String()+"/v1"
	return &b
}

// sdk is the official OpenAI Go SDK pointed at the gateway.
func (b *bundle) sdk(key string, opts ...option.RequestOption) openai.Client {
	if key == "" {
		key = "unused"
	}
	return openai.NewClient(append([]option.RequestOption{option.WithBaseURL(b.url), option.WithAPIKey(key), option.WithMaxRetries(0)}, opts...)...)
}

func userParams(prompt string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{Model: testModel, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)}}
}

// answerTo is the test upstream's answer to prompt.
func answerTo(prompt string) string {
	body := `{"model":"` + testModel + `","messages":[{"role":"user","content":` + quote(prompt) + `}]}`
	return llmtest.Answer(llmtest.Request{Body: []byte(body)})
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

func natsConn(t *testing.T, b *bundle) *nats.Conn {
	return natstest.Connect(t, b.f.NATS.ClientURL())
}
