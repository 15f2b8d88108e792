package gateway_test

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/gateway"
	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/worker"
)

// TestClientThatNeverReads: a streaming client that keeps its connection
// open but stops reading fills the buffers between it and the gateway;
// the gateway's next write waits WriteStall, then counts the client as
// gone: its request is cancelled and the upstream call ends, instead of
// a handler and a subscription held for as long as the connection lives.
func TestClientThatNeverReads(t *testing.T) {
	t.Parallel()
	token := strings.Repeat("x", 32<<10)
	tokens := make([]string, 2000) // 64 MiB: far more than any socket buffers
	for i := range tokens {
		tokens[i] = token
	}
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithScript(func(llmtest.Request) llmtest.Reply {
		return llmtest.Reply{Tokens: tokens}
	})}})
	f.StartWorker(func(c *worker.Config) {
		c.Manager.DefaultModel, c.Manager.Limits.AllowedModels = testModel, []string{testModel}
		c.Manager.MaxAnswerBytes = 128 << 20
	})
	b := bundle{f: f}.withGateway(t, func(c *gateway.Config) {
		c.WriteStall, c.ResumeGrace = 300*time.Millisecond, -1
	})
	ctx := fleettest.Context(t, time.Minute)

	conn, err := net.Dial("tcp", b.gw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"model":"` + testModel + `","stream":true,"messages":[{"role":"user","content":"never read"}]}`
	req := "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nX-Chatfleet-Request-Id: never-read\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	// Nothing is read from conn from now on.
	if err := f.LLM.WaitDisconnects(ctx, 1); err != nil {
		t.Fatalf("the upstream call was not cancelled: %v", err)
	}
	fleettest.Poll(t, ctx, "the request ended cancelled", func() bool {
		ev, found, _ := f.Pub.LastEvent(ctx, protocol.DefaultTenant, "never-read")
		return found && ev.Type == protocol.EventCancelled
	})
}
