package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/tools"
	"github.com/chatfleet/chatfleet/tools/devtools"
)

// TestAskTools: --tools sets the job's fleet_tools, a comma-separated
// list (spaces and empty names dropped; the protocol sorts it), which the
// worker offers the model as tools, never as a field of its own; a name
// that cannot be a tool's is a usage error naming --tools.
func TestAskTools(t *testing.T) {
	f := newFleet(t, nil, llmtest.WithToolUse())
	ctx := fleettest.Context(t, 30*time.Second)
	nc, _ := natstest.JetStream(t, f.NATS.ClientURL())
	srv, err := tools.Serve(nc, tools.Config{Prefix: "chat"}, devtools.All()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(context.Background()) })
	jobs := make(chan protocol.Job, 1)
	if _, err := nc.Subscribe("chat.jobs.>", func(m *nats.Msg) {
		var j protocol.Job
		if json.Unmarshal(m.Data, &j) == nil {
			jobs <- j
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	res := run(ctx, "", "ask", "--tools", "clock, calculator,", "what is 17*23?")
	if res.code != 0 {
		t.Fatalf("ask: %v", res)
	}
	select {
	case j := <-jobs:
		if strings.Join(j.FleetTools, ",") != "calculator,clock" {
			t.Errorf("fleet_tools = %q, want [calculator clock]", j.FleetTools)
		}
	case <-ctx.Done():
		t.Fatal("no job published")
	}
	body := f.LLM.Requests()[0].JSON()
	if body["fleet_tools"] != nil || !strings.Contains(string(body["tools"]), `"name":"calculator"`) || !strings.Contains(string(body["tools"]), `"name":"clock"`) {
		t.Errorf("upstream: tools %s, fleet_tools %s; want both tools offered, no fleet_tools", body["tools"], body["fleet_tools"])
	}
	if !strings.HasPrefix(res.out, "The calculator says 391.") || !strings.Contains(res.err, `[calculator {"expression":"17*23"} → 391]`) {
		t.Errorf("ask: %v; want the tool's result in the answer and its call on stderr", res)
	}

	res = run(ctx, "", "ask", "--tools", "calculator,a.b", "hi")
	if res.code != 2 || !strings.Contains(res.err, "--tools: ") {
		t.Errorf("ask --tools with a bad name: %v; want exit 2 naming --tools", res)
	}
}

// TestAskPrintsToolEvents: the fleet's tool calls in a reply print one
// line each on stderr when they end (arguments, then the output or why
// they failed), with what a tool or the model wrote kept to one line of
// plain text; stdout is the answer alone; --json prints the events as
// received.
func TestAskPrintsToolEvents(t *testing.T) {
	f := newFleet(t, nil)
	ctx := fleettest.Context(t, 30*time.Second)
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	stored := []string{
		`{"v":1,"id":"tools-1","seq":1,"type":"meta","worker":"w1","role":"leader","model":"m"}`,
		`{"v":1,"id":"tools-1","seq":2,"type":"tool","tool":{"call_id":"c0","name":"clock","state":"started","round":1,"arguments":"{}"}}`,
		`{"v":1,"id":"tools-1","seq":3,"type":"reset"}`,
		`{"v":1,"id":"tools-1","seq":4,"type":"tool","tool":{"call_id":"c1","name":"calculator","state":"started","round":1,"arguments":"{\"expression\":\"17*23\"}"}}`,
		`{"v":1,"id":"tools-1","seq":5,"type":"tool","tool":{"call_id":"c2","name":"clock","state":"started","round":1,"arguments":"{\"time_zone\":\"Mars/Base\"}"}}`,
		`{"v":1,"id":"tools-1","seq":6,"type":"tool","tool":{"call_id":"c1","name":"calculator","state":"output","round":1,"output":"39"}}`,
		`{"v":1,"id":"tools-1","seq":7,"type":"tool","tool":{"call_id":"c1","name":"calculator","state":"output","round":1,"output":"1"}}`,
		`{"v":1,"id":"tools-1","seq":8,"type":"tool","tool":{"call_id":"c2","name":"clock","state":"failed","round":1,"error":"unknown time zone\n\u001b[31mMars/Base","duration_ms":2}}`,
		`{"v":1,"id":"tools-1","seq":9,"type":"tool","tool":{"call_id":"c1","name":"calculator","state":"done","round":1,"output":"391","duration_ms":3}}`,
		`{"v":1,"id":"tools-1","seq":10,"type":"chunk","content":"The calculator says 391."}`,
		`{"v":1,"id":"tools-1","seq":11,"type":"done","finish_reason":"stop"}`,
	}
	for _, ev := range stored {
		if _, err := js.Publish(ctx, "chat.write.default.tools-1", []byte(ev)); err != nil {
			t.Fatal(err)
		}
	}
	res := run(ctx, "", "ask", "--id", "tools-1", "what is 17*23?")
	wantErr := "chatfleet ask: request default/tools-1 already ran; showing its stored reply (ask with a new --id to ask again)\n" +
		"[reset: a worker failed over; the answer starts again]\n" +
		"[clock {\"time_zone\":\"Mars/Base\"} failed: unknown time zone [31mMars/Base]\n" +
		"[calculator {\"expression\":\"17*23\"} → 391]\n"
	if res.code != 0 || res.out != "The calculator says 391.\n" || res.err != wantErr {
		t.Errorf("plain: %v\nwant stdout the answer and stderr:\n%s", res, wantErr)
	}
	res = run(ctx, "", "ask", "--json", "--id", "tools-1", "what is 17*23?")
	if res.code != 0 || res.out != strings.Join(stored, "\n")+"\n" {
		t.Errorf("--json: %v; want every event as stored", res)
	}
}
