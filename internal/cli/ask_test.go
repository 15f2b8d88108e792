package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/topology"
	"github.com/chatfleet/chatfleet/worker"
)

// TestAskPrintsAnswer: ask streams the upstream's answer to Out, ends it
// with a newline and exits 0; unset sampling flags are left to the
// upstream.
func TestAskPrintsAnswer(t *testing.T) {
	f := newFleet(t, nil)
	ctx := fleettest.Context(t, 30*time.Second)

	res := run(ctx, "", "ask", "what", "is", "NATS?")
	if res.code != 0 {
		t.Fatalf("ask: %v", res)
	}
	if f.LLM.Calls() != 1 {
		t.Fatalf("upstream calls = %d, want 1", f.LLM.Calls())
	}
	req := f.LLM.Requests()[0]
	if got := req.LastUserMessage(); got != "what is NATS?" {
		t.Errorf("upstream prompt = %q, want the arguments joined by spaces", got)
	}
	if want := llmtest.Answer(req) + "\n"; res.out != want {
		t.Errorf("stdout = %q, want %q", res.out, want)
	}
	if res.err != "" {
		t.Errorf("stderr = %q, want nothing", res.err)
	}
	body := req.JSON()
	if m := req.Model(); m != testModel {
		t.Errorf("model = %q, want the worker's default %q", m, testModel)
	}
	for _, k := range []string{"temperature", "max_tokens"} {
		if v, ok := body[k]; ok {
			t.Errorf("%s sent as %s without its flag", k, v)
		}
	}
	var msgs []struct{ Role string }
	if err := json.Unmarshal(body["messages"], &msgs); err != nil || len(msgs) != 1 || msgs[0].Role != "user" {
		t.Errorf("messages = %s, want the user's only", body["messages"])
	}
}

// TestAskJSON: --json prints every event exactly once, one JSON line
// each, in order: meta first, done last, the chunks adding up to the
// answer.
func TestAskJSON(t *testing.T) {
	f := newFleet(t, func(c *worker.Config) { c.Manager.ChunkWindow = -1 })
	ctx := fleettest.Context(t, 30*time.Second)

	res := run(ctx, "", "ask", "--json", "--id", "json-1", "list the events")
	if res.code != 0 {
		t.Fatalf("ask --json: %v", res)
	}
	lines := strings.Split(strings.TrimSuffix(res.out, "\n"), "\n")
	if len(lines) < 3 || !strings.HasSuffix(res.out, "\n") {
		t.Fatalf("stdout = %q, want meta, chunks and done on lines of their own", res.out)
	}
	var content strings.Builder
	for i, line := range lines {
		var ev protocol.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("line %d is not an event: %q: %v", i+1, line, err)
		}
		if ev.Seq != uint64(i+1) || ev.ID != "json-1" || ev.V != 1 {
			t.Errorf("line %d: seq %d id %q v %d; want seq %d id json-1 v 1", i+1, ev.Seq, ev.ID, ev.V, i+1)
		}
		switch {
		case i == 0:
			if ev.Type != protocol.EventMeta || ev.Role != protocol.RoleLeader || ev.Model != testModel {
				t.Errorf("first event = %+v, want meta of the leader", ev)
			}
		case i == len(lines)-1:
			if ev.Type != protocol.EventDone || ev.FinishReason != "stop" {
				t.Errorf("last event = %+v, want done", ev)
			}
		case ev.Type == protocol.EventChunk:
			content.WriteString(ev.Content)
		default:
			t.Errorf("event %d = %+v, want a chunk", i+1, ev)
		}
	}
	if want := llmtest.Answer(f.LLM.Requests()[0]); content.String() != want {
		t.Errorf("chunks add up to %q, want %q", content.String(), want)
	}
	if res.err != "" {
		t.Errorf("stderr = %q, want nothing", res.err)
	}
}

// TestAskFlagsReachUpstream: --model, --system, --temperature 0 (as an
// explicit 0), --max-tokens reach the upstream body; --id and --tenant
// name the request in the fleet (the upstream never sees them), so the
// reply can be attached under them.
func TestAskFlagsReachUpstream(t *testing.T) {
	f := newFleet(t, nil)
	ctx := fleettest.Context(t, 30*time.Second)

	res := run(ctx, "", "ask", "--model", "other-model", "--system", "answer in French",
		"--temperature", "0", "--max-tokens", "42", "--id", "flags-1", "--tenant", "acme", "hello", "there")
	if res.code != 0 {
		t.Fatalf("ask: %v", res)
	}
	if f.LLM.Calls() != 1 {
		t.Fatalf("upstream calls = %d, want 1", f.LLM.Calls())
	}
	req := f.LLM.Requests()[0]
	body := req.JSON()
	want := map[string]string{
		"model":       `"other-model"`,
		"temperature": `0`,
		"max_tokens":  `42`,
		"messages":    `[{"role":"system","content":"answer in French"},{"role":"user","content":"hello there"}]`,
	}
	for k, v := range want {
		if !jsonEqual(t, body[k], v) {
			t.Errorf("upstream %s = %s, want %s", k, body[k], v)
		}
	}
	if want := llmtest.Answer(req) + "\n"; res.out != want {
		t.Errorf("stdout = %q, want %q", res.out, want)
	}

	// The request lives under the tenant and ID given.
	reply, err := f.Pub.Attach(ctx, "acme", "flags-1")
	if err != nil {
		t.Fatal(err)
	}
	defer reply.Stop()
	ans, err := reply.Collect(ctx)
	if err != nil {
		t.Fatalf("attach acme/flags-1: %v", err)
	}
	if ans.Content != llmtest.Answer(req) || ans.Tenant != "acme" || ans.ID != "flags-1" || ans.Role != protocol.RoleLeader {
		t.Errorf("attached answer = %+v", ans)
	}
}

func jsonEqual(t *testing.T, got json.RawMessage, want string) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal(got, &x) != nil {
		return false
	}
	if err := json.Unmarshal([]byte(want), &y); err != nil {
		t.Fatalf("bad expectation %s: %v", want, err)
	}
	a, _ := json.Marshal(x)
	b, _ := json.Marshal(y)
	return string(a) == string(b)
}

// TestAskCache: without flags a repeated prompt is answered from the
// cache; --no-cache neither reads nor writes it.
func TestAskCache(t *testing.T) {
	f := newFleet(t, nil)
	ctx := fleettest.Context(t, 30*time.Second)

	ask := func(wantCalls int, args ...string) result {
		t.Helper()
		res := run(ctx, "", append([]string{"ask"}, args...)...)
		if res.code != 0 {
			t.Fatalf("ask %v: %v", args, res)
		}
		if got := f.LLM.Calls(); got != wantCalls {
			t.Fatalf("after ask %v: upstream calls = %d, want %d", args, got, wantCalls)
		}
		if want := llmtest.Answer(f.LLM.Requests()[0]) + "\n"; !strings.HasPrefix(res.out, "{") && res.out != want {
			t.Errorf("ask %v printed %q, want %q", args, res.out, want)
		}
		return res
	}
	ask(1, "--no-cache", "same question")
	ask(2, "--no-cache", "same question")    // not read from the cache
	ask(3, "same question")                  // nor written by --no-cache
	res := ask(3, "--json", "same question") // now it is cached
	first := strings.SplitN(res.out, "\n", 2)[0]
	var meta protocol.Event
	if err := json.Unmarshal([]byte(first), &meta); err != nil || meta.Role != protocol.RoleCache {
		t.Errorf("meta of the repeated ask = %s, want role cache", first)
	}
	if !strings.Contains(res.out, `"cached":true`) {
		t.Errorf("done of the repeated ask is not marked cached:\n%s", res.out)
	}
}

// TestAskDedupe: a second identical ask while the first is generating
// follows it; with --no-dedupe it makes its own upstream call.
func TestAskDedupe(t *testing.T) {
	stall, release := fleettest.Stalled()
	defer release()
	f := newFleet(t, nil, stall)
	ctx := fleettest.Context(t, 30*time.Second)

	first := start(ctx, "ask", "--no-cache", "shared question")
	if err := f.LLM.WaitCalls(ctx, 1); err != nil {
		t.Fatalf("first ask never reached the upstream: %v", err)
	}
	follower := start(ctx, "ask", "--json", "--no-cache", "shared question")
	follower.out.WaitFor(t, ctx, `"type":"meta"`)
	own := start(ctx, "ask", "--json", "--no-cache", "--no-dedupe", "shared question")
	if err := f.LLM.WaitCalls(ctx, 2); err != nil {
		t.Fatalf("--no-dedupe did not call the upstream itself: %v", err)
	}
	own.out.WaitFor(t, ctx, `"type":"meta"`)
	release()

	want := llmtest.Answer(f.LLM.Requests()[0])
	if res := first.wait(t, 30*time.Second); res.code != 0 || res.out != want+"\n" {
		t.Errorf("first ask: %v", res)
	}
	for name, r := range map[string]*running{"follower": follower, "--no-dedupe": own} {
		res := r.wait(t, 30*time.Second)
		if res.code != 0 {
			t.Errorf("%s: %v", name, res)
			continue
		}
		var meta protocol.Event
		_ = json.Unmarshal([]byte(strings.SplitN(res.out, "\n", 2)[0]), &meta)
		wantRole := protocol.RoleFollower
		if r == own {
			wantRole = protocol.RoleLeader
		}
		if meta.Type != protocol.EventMeta || meta.Role != wantRole {
			t.Errorf("%s: meta = %+v, want role %s", name, meta, wantRole)
		}
	}
	if got := f.LLM.Calls(); got != 2 {
		t.Errorf("upstream calls = %d, want 2 (one shared, one --no-dedupe)", got)
	}
}

// TestAskPromptFromStdin: with no arguments, or "-", the prompt is read
// from stdin, trimmed.
func TestAskPromptFromStdin(t *testing.T) {
	f := newFleet(t, nil)
	ctx := fleettest.Context(t, 30*time.Second)

	for i, args := range [][]string{{"ask"}, {"ask", "--no-cache", "-"}} {
		res := run(ctx, "  a prompt\non two lines \n\n", args...)
		if res.code != 0 {
			t.Fatalf("%v: %v", args, res)
		}
		if f.LLM.Calls() != i+1 {
			t.Fatalf("%v: upstream calls = %d, want %d", args, f.LLM.Calls(), i+1)
		}
		req := f.LLM.Requests()[i]
		if got := req.LastUserMessage(); got != "a prompt\non two lines" {
			t.Errorf("%v: upstream prompt = %q", args, got)
		}
		if want := llmtest.Answer(req) + "\n"; res.out != want {
			t.Errorf("%v: stdout = %q, want %q", args, res.out, want)
		}
	}
}

// TestAskUpstreamError: an error event ends ask with exit 1 and the error
// on stderr.
func TestAskUpstreamError(t *testing.T) {
	f := newFleet(t, func(c *worker.Config) { c.LLM.MaxRetries = -1 },
		llmtest.WithScript(func(llmtest.Request) llmtest.Reply {
			return llmtest.Reply{Status: 400, Message: "the prompt displeases the model"}
		}))
	ctx := fleettest.Context(t, 30*time.Second)

	res := run(ctx, "", "ask", "anything")
	if res.code != 1 {
		t.Fatalf("ask: %v; want exit 1", res)
	}
	if !strings.Contains(res.err, "error:") || !strings.Contains(res.err, "the prompt displeases the model") {
		t.Errorf("stderr = %q, want the upstream's error", res.err)
	}
	if f.LLM.Calls() != 1 {
		t.Errorf("upstream calls = %d, want 1", f.LLM.Calls())
	}

	res = run(ctx, "", "ask", "--json", "--no-cache", "anything")
	lines := strings.Split(strings.TrimSpace(res.out), "\n")
	var last protocol.Event
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Type != protocol.EventError || last.Error == nil {
		t.Errorf("--json: last line = %q, want the error event", lines[len(lines)-1])
	}
	if res.code != 1 {
		t.Errorf("--json: exit %d, want 1", res.code)
	}
}

// TestAskUsage: a missing prompt or a bad flag is a usage error, found
// before anything connects.
func TestAskUsage(t *testing.T) {
	useNATS(t, "nats://127.0.0.1:1") // nothing listens: a connect would fail with 1
	ctx := fleettest.Context(t, 30*time.Second)
	for _, tc := range []struct {
		stdin string
		args  []string
		err   string
	}{
		{"", []string{"ask"}, "no prompt"},
		{" \n\t\n", []string{"ask", "-"}, "no prompt"},
		{"", []string{"ask", "--json"}, "no prompt"},
		{"", []string{"ask", "--bogus", "hi"}, "flag provided but not defined: -bogus"},
		{"", []string{"ask", "--temperature", "warm", "hi"}, "invalid value"},
		{"", []string{"ask", "--max-tokens"}, "flag needs an argument"},
		// Values the CLI can check itself are usage errors too, not failed
		// requests.
		{"", []string{"ask", "--temperature", "5", "hi"}, "--temperature: 5 is out of range [0, 2]"},
		{"", []string{"ask", "--temperature", "-1", "hi"}, "--temperature: -1 is out of range"},
		{"", []string{"ask", "--max-tokens", "0", "hi"}, "--max-tokens: must be at least 1"},
		{"", []string{"ask", "--max-tokens", "-3", "hi"}, "--max-tokens: must be at least 1"},
		{"", []string{"ask", "--timeout", "-1s", "hi"}, "--timeout must not be negative"},
		{"", []string{"ask", "--id", "a b", "hi"}, "--id: contains whitespace"},
		{"", []string{"ask", "--tenant", "café", "hi"}, "--tenant: contains 'é'"},
	} {
		res := run(ctx, tc.stdin, tc.args...)
		if res.code != 2 || !strings.Contains(res.err, tc.err) || res.out != "" {
			t.Errorf("%v: %v; want exit 2 and %q", tc.args, res, tc.err)
		}
	}
}

// TestAskNoServer: an unreachable NATS fails at once with exit 1 (ask does
// not wait for a server).
func TestAskNoServer(t *testing.T) {
	useNATS(t, "nats://"+freeAddr(t))
	res := run(fleettest.Context(t, 30*time.Second), "", "ask", "hello")
	if res.code != 1 || !strings.Contains(res.err, "connect to NATS") {
		t.Errorf("%v; want exit 1 and the connect error", res)
	}
}

// TestAskCancelledByContext: cancelling ask's context (Ctrl-C) cancels the
// request in the fleet: the upstream call is dropped, the reply ends
// cancelled and ask exits 3.
func TestAskCancelledByContext(t *testing.T) {
	stall, release := fleettest.Stalled()
	defer release()
	f := newFleet(t, nil, stall)
	ctx := fleettest.Context(t, 30*time.Second)

	sigCtx, interrupt := context.WithCancel(context.Background())
	defer interrupt()
	ask := start(sigCtx, "ask", "--id", "interrupted-1", "a long story")
	if err := f.LLM.WaitCalls(ctx, 1); err != nil {
		t.Fatalf("ask never reached the upstream: %v", err)
	}
	interrupt()
	res := ask.wait(t, 30*time.Second)
	if res.code != 3 {
		t.Errorf("exit %d, want 3: %v", res.code, res)
	}
	if !strings.Contains(res.err, "cancelled") {
		t.Errorf("stderr = %q, want it to say cancelled", res.err)
	}
	if err := f.LLM.WaitDisconnects(ctx, 1); err != nil {
		t.Errorf("the upstream never saw the call dropped: %v", err)
	}
	// The fleet recorded the end: the stored reply ends cancelled.
	if last := lastStored(t, ctx, f, "default", "interrupted-1"); last.Type != protocol.EventCancelled {
		t.Errorf("stored reply ends with %+v, want cancelled", last)
	}
}

// TestAskTimeout: --timeout gives up on a request that does not finish in
// time: the answer so far is on a line of its own, stderr says it timed
// out and that the request was cancelled (the stored reply ends
// cancelled); exit 1.
func TestAskTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	f := newFleet(t, nil, llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		return llmtest.Reply{Tokens: []string{"partial", " answer", " never", " finished"}, StallAfter: 2, Release: release}
	}))
	ctx := fleettest.Context(t, 30*time.Second)

	res := run(ctx, "", "ask", "--id", "slow-1", "--timeout", "1s", "never answered")
	// What arrived within the second depends on the machine: part of the
	// answer, on a line of its own, or nothing (TestGaveUpEndsLine tests
	// the line's end without a clock).
	if part := strings.TrimSuffix(res.out, "\n"); res.code != 1 || !strings.HasPrefix("partial answer", part) ||
		(res.out != "" && !strings.HasSuffix(res.out, "\n")) {
		t.Errorf("%v; want exit 1 and the partial answer on a line of its own", res)
	}
	if !strings.Contains(res.err, "chatfleet ask: timed out after 1s; the request was cancelled") {
		t.Errorf("stderr = %q", res.err)
	}
	if f.LLM.Calls() != 1 {
		t.Errorf("upstream calls = %d, want 1", f.LLM.Calls())
	}
	if last := lastStored(t, ctx, f, "default", "slow-1"); last.Type != protocol.EventCancelled {
		t.Errorf("stored reply ends with %+v, want cancelled", last)
	}
}

// lastStored reads tenant/id's stored reply to its end and returns the
// last event.
func lastStored(t *testing.T, ctx context.Context, f *fleettest.Fleet, tenant, id string) protocol.Event {
	t.Helper()
	reply, err := f.Pub.Attach(ctx, tenant, id)
	if err != nil {
		t.Fatal(err)
	}
	defer reply.Stop()
	var last protocol.Event
	for ev, err := range reply.Events(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		last = ev
	}
	return last
}

// TestAskErrorAfterOutput: an error event after part of the answer ends
// the answer's line before the error (on stderr); exit 1.
func TestAskErrorAfterOutput(t *testing.T) {
	newFleet(t, func(c *worker.Config) { c.Manager.MidStreamRetries = -1; c.LLM.MaxRetries = -1 },
		llmtest.WithScript(func(llmtest.Request) llmtest.Reply {
			return llmtest.Reply{Tokens: []string{"half", " of", " it"}, CutAfter: 2}
		}))
	res := run(fleettest.Context(t, 30*time.Second), "", "ask", "cut me off")
	if res.code != 1 || res.out != "half of\n" || !strings.HasPrefix(res.err, "error: upstream_error") {
		t.Errorf("%v; want exit 1, the partial answer's line ended, the error on stderr", res)
	}
}

// TestAskInvalidRequestFromWorker: a job the worker refuses ends with an
// invalid_request error event: exit 1 (not 2: the command line was fine),
// the message showing a non-ASCII model name as it is.
func TestAskInvalidRequestFromWorker(t *testing.T) {
	newFleet(t, func(c *worker.Config) { c.Manager.Limits.AllowedModels = []string{testModel} })
	res := run(fleettest.Context(t, 30*time.Second), "", "ask", "--model", "modèle-ü", "hello")
	if res.code != 1 || res.out != "" {
		t.Errorf("%v; want exit 1", res)
	}
	if want := `error: invalid_request: model: model "modèle-ü" is not allowed here`; !strings.Contains(res.err, want) {
		t.Errorf("stderr = %q, want %q", res.err, want)
	}
}

// TestAskIDAlreadyRan: asking again with the ID of a request that ran
// shows its stored reply, says so on stderr, and submits nothing: no job
// is published and the upstream is not called again.
func TestAskIDAlreadyRan(t *testing.T) {
	f := newFleet(t, nil)
	ctx := fleettest.Context(t, 30*time.Second)
	first := run(ctx, "", "ask", "--id", "ran-1", "--no-cache", "the question")
	if first.code != 0 || first.err != "" {
		t.Fatalf("first ask: %v", first)
	}
	jobs := countJobs(t, f)
	for _, args := range [][]string{{"ask", "--id", "ran-1", "another question"}, {"ask", "--json", "--id", "ran-1", "x"}} {
		res := run(ctx, "", args...)
		if res.code != 0 || !strings.Contains(res.err, "request default/ran-1 already ran; showing its stored reply") {
			t.Errorf("%v: %v", args, res)
		}
		if args[1] != "--json" && res.out != first.out {
			t.Errorf("%v printed %q, want the stored %q", args, res.out, first.out)
		}
		if args[1] == "--json" && !strings.Contains(res.out, `"type":"done"`) {
			t.Errorf("--json printed %q", res.out)
		}
	}
	if n := jobs(); n != 0 || f.LLM.Calls() != 1 {
		t.Errorf("%d jobs published, %d upstream calls after the repeats; want 0 and 1", n, f.LLM.Calls())
	}
}

// TestAskIDRunning: asking with the ID of a request still running follows
// it; giving up at --timeout leaves it running (it was not this ask's).
func TestAskIDRunning(t *testing.T) {
	stall, release := fleettest.Stalled()
	defer release()
	f := newFleet(t, nil, stall)
	ctx := fleettest.Context(t, 30*time.Second)
	owner := start(ctx, "ask", "--id", "running-1", "slow question")
	if err := f.LLM.WaitCalls(ctx, 1); err != nil {
		t.Fatal(err)
	}
	res := run(ctx, "", "ask", "--id", "running-1", "--timeout", "1s", "slow question")
	if res.code != 1 || !strings.Contains(res.err, "request default/running-1 is already running; following its reply") ||
		!strings.Contains(res.err, "timed out after 1s; the request goes on") {
		t.Errorf("second ask: %v", res)
	}
	release()
	if res := owner.wait(t, 30*time.Second); res.code != 0 {
		t.Errorf("the running request was disturbed: %v", res)
	}
	if f.LLM.Calls() != 1 {
		t.Errorf("upstream calls = %d, want 1", f.LLM.Calls())
	}
}

// TestAskIDQueued: asked again under the ID of a job that is still queued
// (nothing stored for it yet, so the reply lookup finds nothing), ask
// learns from the jobs stream that the job was submitted before and follows
// it: its timeout leaves the job alone, which a worker then answers.
func TestAskIDQueued(t *testing.T) {
	f := fleettest.New(t, fleettest.Options{})
	useNATS(t, f.NATS.ClientURL())
	ctx := fleettest.Context(t, 30*time.Second)
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	if _, err := topology.Ensure(ctx, js, f.Topology); err != nil { // no worker yet: the job waits
		t.Fatal(err)
	}
	jobs := countJobs(t, f)
	owner := start(ctx, "ask", "--id", "queued-1", "--model", testModel, "a queued question")
	fleettest.Poll(t, ctx, "the first job stored", func() bool { return jobs() == 1 })
	res := run(ctx, "", "ask", "--id", "queued-1", "--model", testModel, "--timeout", "500ms", "a queued question")
	if res.code != 1 || !strings.Contains(res.err, "request default/queued-1 is already running; following its reply") ||
		!strings.Contains(res.err, "the request goes on") {
		t.Errorf("second ask: %v", res)
	}
	f.StartWorker(func(c *worker.Config) { c.Manager.DefaultModel = testModel })
	if res := owner.wait(t, 30*time.Second); res.code != 0 {
		t.Errorf("the queued request was disturbed: %v", res)
	}
}

// countJobs counts the jobs published from now on (on any jobs subject);
// the returned func says how many so far.
func countJobs(t *testing.T, f *fleettest.Fleet) func() int {
	t.Helper()
	nc := natstest.Connect(t, f.NATS.ClientURL())
	var n atomic.Int32
	if _, err := nc.Subscribe("chat.jobs.>", func(*nats.Msg) { n.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil { // subscribed before anything is published
		t.Fatal(err)
	}
	return func() int {
		// A round trip to the server: what was published before reached it
		// and, in order, this connection.
		_ = nc.Flush()
		return int(n.Load())
	}
}

// TestAskIgnoresUnknownEvents: events of types and fields the CLI does
// not know (progress, a future type, extra fields) print nothing in plain
// mode and are printed as received with --json; the answer and the exit
// code are unaffected.
func TestAskIgnoresUnknownEvents(t *testing.T) {
	f := newFleet(t, nil)
	ctx := fleettest.Context(t, 30*time.Second)
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	stored := []string{
		`{"v":1,"id":"future-1","seq":1,"type":"meta","worker":"w9","role":"leader","model":"m","gpu":"h100"}`,
		`{"v":1,"id":"future-1","seq":2,"type":"progress","stage":"waiting","reason":"llm_slot"}`,
		`{"v":1,"id":"future-1","seq":3,"type":"thinking_hard","depth":{"x":[1,2]}}`,
		`{"v":1,"id":"future-1","seq":4,"type":"progress","stage":"a_stage_from_the_future"}`,
		`{"v":1,"id":"future-1","seq":5,"type":"chunk","content":"Hello","confidence":0.9}`,
		`{"v":1,"id":"future-1","seq":6,"type":"chunk","content":" world"}`,
		`{"v":1,"id":"future-1","seq":7,"type":"done","finish_reason":"stop","carbon_g":0.1}`,
	}
	for _, ev := range stored {
		if _, err := js.Publish(ctx, "chat.write.default.future-1", []byte(ev)); err != nil {
			t.Fatal(err)
		}
	}
	res := run(ctx, "", "ask", "--id", "future-1", "hi")
	if res.code != 0 || res.out != "Hello world\n" {
		t.Errorf("plain: %v; want the answer only", res)
	}
	res = run(ctx, "", "ask", "--json", "--id", "future-1", "hi")
	if res.code != 0 || res.out != strings.Join(stored, "\n")+"\n" {
		t.Errorf("--json: %v; want every event as stored", res)
	}
}

// submitHangs sets up NATS for asks whose submit never completes: the
// topology, but the jobs stream replaced by a plain subscriber that takes
// every job and never acknowledges it. jobs receives each job's ID.
func submitHangs(t *testing.T) (js jetstream.JetStream, jobs <-chan string) {
	t.Helper()
	s := natstest.RunServer(t)
	useNATS(t, s.ClientURL())
	nc, js := natstest.JetStream(t, s.ClientURL())
	ctx := fleettest.Context(t, 30*time.Second)
	if _, err := topology.Ensure(ctx, js, topology.Config{}); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(ctx, "CHAT_JOBS"); err != nil {
		t.Fatal(err)
	}
	return js, publishedJobs(t, nc)
}

// publishedJobs returns the IDs of the jobs published from now on, as nc
// receives them.
func publishedJobs(t *testing.T, nc *nats.Conn) <-chan string {
	t.Helper()
	ch := make(chan string, 10)
	if _, err := nc.Subscribe("chat.jobs.>", func(m *nats.Msg) { ch <- protocol.IDFromMsgID(m.Header.Get(jetstream.MsgIDHeader)) }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil { // subscribed before anything is published
		t.Fatal(err)
	}
	return ch
}

// interruptOnceSubmitted runs ask --id id, interrupts it (Ctrl-C) once
// its job was published, and returns its result.
func interruptOnceSubmitted(t *testing.T, ctx context.Context, jobs <-chan string, id string) result {
	t.Helper()
	sigCtx, interrupt := context.WithCancel(context.Background())
	defer interrupt()
	ask := start(sigCtx, "ask", "--id", id, "hello")
	select {
	case got := <-jobs:
		if got != id {
			t.Fatalf("job %q published, want %q", got, id)
		}
	case <-ctx.Done():
		t.Fatalf("ask never published its job; stderr:\n%s", ask.err.String())
	}
	interrupt()
	return ask.wait(t, 30*time.Second)
}

// TestAskInterruptedWhileSubmitting: Ctrl-C while the submit waits for
// the jobs stream's acknowledgement cancels the request (the job may have
// been stored) and exits 3; when the cancel fails, ask says so and exits
// 1, after Ctrl-C as after --timeout.
func TestAskInterruptedWhileSubmitting(t *testing.T) {
	js, jobs := submitHangs(t)
	ctx := fleettest.Context(t, 30*time.Second)

	res := interruptOnceSubmitted(t, ctx, jobs, "submitting-1")
	if res.code != 3 || res.err != "chatfleet ask: interrupted while submitting; the request was cancelled\n" {
		t.Errorf("interrupted: %v; want exit 3", res)
	}
	kv, err := js.KeyValue(ctx, "chat_cancels")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, "default.submitting-1"); err != nil {
		t.Errorf("the request was not cancelled: %v", err)
	}

	// Without the cancels bucket every cancel fails.
	if err := js.DeleteKeyValue(ctx, "chat_cancels"); err != nil {
		t.Fatal(err)
	}
	res = interruptOnceSubmitted(t, ctx, jobs, "submitting-2")
	if res.code != 1 || !strings.HasPrefix(res.err, "chatfleet ask: interrupted while submitting; cancelling the request failed, it may go on: ") {
		t.Errorf("interrupted, the cancel failing: %v; want exit 1", res)
	}
	res = run(ctx, "", "ask", "--timeout", "1s", "hello")
	if res.code != 1 || !strings.HasPrefix(res.err, "chatfleet ask: timed out after 1s; cancelling the request failed, it may go on: ") {
		t.Errorf("timed out, the cancel failing: %v; want exit 1", res)
	}
}

// TestAskInterruptedNoWorker: Ctrl-C while a job waits in the queue with
// no worker to end it: ask cancels the request and does not wait for a
// worker to pull it (exit 3); when the cancel fails, it says so at once
// (exit 1).
func TestAskInterruptedNoWorker(t *testing.T) {
	f := fleettest.New(t, fleettest.Options{}) // no worker
	useNATS(t, f.NATS.ClientURL())
	ctx := fleettest.Context(t, 30*time.Second)
	nc, js := natstest.JetStream(t, f.NATS.ClientURL())
	if _, err := topology.Ensure(ctx, js, topology.Config{}); err != nil {
		t.Fatal(err)
	}
	jobs := publishedJobs(t, nc)
	// Ctrl-C may come before the stream's acknowledgement or after it.
	if res := interruptOnceSubmitted(t, ctx, jobs, "queued-1"); res.code != 3 || !strings.Contains(res.err, "; the request was cancelled") {
		t.Errorf("interrupted: %v; want exit 3", res)
	}
	if err := js.DeleteKeyValue(ctx, "chat_cancels"); err != nil {
		t.Fatal(err)
	}
	if res := interruptOnceSubmitted(t, ctx, jobs, "queued-2"); res.code != 1 || !strings.Contains(res.err, "; cancelling the request failed, it may go on: ") {
		t.Errorf("interrupted, the cancel failing: %v; want exit 1", res)
	}
}

// TestAskInterruptedWhileFollowing: Ctrl-C while following a request
// this ask did not submit stops following and says the request goes on;
// it does.
func TestAskInterruptedWhileFollowing(t *testing.T) {
	stall, release := fleettest.Stalled()
	defer release()
	f := newFleet(t, nil, stall)
	ctx := fleettest.Context(t, 30*time.Second)
	owner := start(ctx, "ask", "--id", "followed-1", "slow question")
	if err := f.LLM.WaitCalls(ctx, 1); err != nil {
		t.Fatal(err)
	}
	sigCtx, interrupt := context.WithCancel(context.Background())
	defer interrupt()
	follower := start(sigCtx, "ask", "--id", "followed-1", "slow question")
	follower.waitErr(t, ctx, "following its reply")
	interrupt()
	res := follower.wait(t, 30*time.Second)
	if res.code != 1 || !strings.HasSuffix(res.err, "chatfleet ask: stopped following; the request goes on\n") {
		t.Errorf("follower: %v", res)
	}
	release()
	if res := owner.wait(t, 30*time.Second); res.code != 0 {
		t.Errorf("the followed request was disturbed: %v", res)
	}
}
