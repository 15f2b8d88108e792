package manager_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/protocol"
)

// TestDifferentRequestsNeverShare: concurrent jobs that differ in prompt,
// model, temperature, tools, response format or tenant each lead their own
// generation, across workers; only a true duplicate follows.
func TestDifferentRequestsNeverShare(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	f := fleettest.New(t, fleettest.Options{LLM: gated(release)})
	for range 3 {
		f.StartWorker(nil)
	}
	ctx := ctxFor(t, time.Minute)

	base := userJob("which answer is mine?")
	variant := func(change func(*protocol.Job)) protocol.Job {
		j := base
		j.Messages = append([]protocol.Message(nil), base.Messages...)
		change(&j)
		return j
	}
	jobs := map[string]protocol.Job{
		"base":   base,
		"prompt": variant(func(j *protocol.Job) { j.Messages[0].Content = protocol.TextContent("which answer is mine?!") }),
		"system": variant(func(j *protocol.Job) {
			j.Messages = append([]protocol.Message{{Role: "system", Content: protocol.TextContent("be terse")}}, j.Messages...)
		}),
		"model":       variant(func(j *protocol.Job) { j.Model = "m2" }),
		"temperature": variant(func(j *protocol.Job) { j.Temperature = protocol.Float(0) }),
		"top_p":       variant(func(j *protocol.Job) { j.TopP = protocol.Float(0.5) }),
		"tools": variant(func(j *protocol.Job) {
			j.Tools = []protocol.Tool{{Type: "function", Function: protocol.FunctionSpec{Name: "lookup", Parameters: json.RawMessage(`{"type":"object"}`)}}}
		}),
		"response_format": variant(func(j *protocol.Job) { j.ResponseFormat = &protocol.ResponseFormat{Type: "json_object"} }),
		"tenant":          variant(func(j *protocol.Job) { j.Tenant = "another-tenant" }),
		"extra field":     variant(func(j *protocol.Job) { j.Extra = map[string]json.RawMessage{"top_k": json.RawMessage("40")} }),
	}
	subs := map[string]*submitted{}
	for name, job := range jobs {
		subs[name] = submit(t, ctx, f.Pub, job)
	}
	twin := submit(t, ctx, f.Pub, base)
	for _, s := range subs {
		<-s.metaRead
	}
	<-twin.metaRead
	close(release)
	for name, s := range subs {
		if name == "base" {
			continue
		}
		if r := s.wait(t); r.err != nil || r.meta.Role != protocol.RoleLeader {
			t.Errorf("%s: %s", name, describe(r))
		}
	}
	// Which of base and its twin leads is the workers' race; the other
	// follows it and gets the same answer.
	b, tw := subs["base"].wait(t), twin.wait(t)
	if b.err != nil || tw.err != nil || b.meta.Role == tw.meta.Role || b.answer.Content != tw.answer.Content {
		t.Errorf("base: %s\ntwin: %s\nwant one leader and one follower with the same answer", describe(b), describe(tw))
	}
	if f.LLM.Calls() != len(jobs) {
		t.Errorf("upstream calls = %d, want %d", f.LLM.Calls(), len(jobs))
	}
}
