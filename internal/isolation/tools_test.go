package isolation_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/tools"
	"github.com/chatfleet/chatfleet/tools/devtools"
)

// toolsWork: a tool server and a preparation service run under the
// identities `chatfleet auth` generated for them (tools, prepare), the
// workers find and call them under theirs, and a tenant's job runs the
// tool loop through them; the two identities may do nothing else.
// Tenant B's attempts at the tools are in refusedAttacks.
func toolsWork(t *testing.T, f *fleet) {
	srv, err := tools.Serve(f.connect(t, "tools"), tools.Config{Prefix: f.names.Prefix()}, devtools.Calculator(), spell())
	if err != nil {
		t.Fatalf("a tool server with the tool servers' identity: %v", err)
	}
	t.Cleanup(func() { _ = srv.Stop(context.Background()) })
	prep, err := tools.ServePreparation(f.connect(t, "prepare"), tools.Config{Prefix: f.names.Prefix()}, prepareWithSystem)
	if err != nil {
		t.Fatalf("a preparation service with its identity: %v", err)
	}
	t.Cleanup(func() { _ = prep.Stop(context.Background()) })
	runSteps(t, f, []step{
		{"the workers discover, call and stream the tools", workersCallTools},
		{"the workers ask the preparation service", workersPrepare},
		{"a tenant's job runs a fleet tool", tenantJobRunsTool},
		{"the tool servers and the preparation services may do nothing else", toolIdentitiesConfined},
	})
}

// spell streams its word's letters one by one.
func spell() tools.Tool {
	return tools.Tool{Name: "spell", Description: "spells a word", Handler: func(_ context.Context, c tools.Call, out *tools.Output) error {
		for _, r := range strings.Trim(c.Arguments, `"`) {
			_, _ = out.WriteString(string(r))
		}
		return nil
	}}
}

// prepareWithSystem puts a system prompt before the job's messages.
func prepareWithSystem(_ context.Context, job *protocol.Job) ([]protocol.Message, error) {
	return append([]protocol.Message{{Role: protocol.RoleSystem, Content: protocol.TextContent("prepared for " + job.Tenant)}}, job.Messages...), nil
}

func workersCallTools(t *testing.T, f *fleet) {
	ctx := fleettest.Context(t, 20*time.Second)
	client := tools.NewClient(f.connect(t, "workers"), f.names)
	if known := client.Tools(ctx); len(known) != 2 || known["calculator"].Description == "" || known["spell"].Name != "spell" {
		t.Fatalf("the workers discover %+v, want calculator and spell", known)
	}
	var chunks []string
	rep, err := client.Call(ctx, "spell", tools.Request{ID: "c1", Tenant: tenantA, Arguments: `"abc"`}, func(c tools.Chunk) { chunks = append(chunks, c.Text) })
	if err != nil || rep.Output != "abc" || strings.Join(chunks, "|") != "a|b|c" {
		t.Errorf("spell(abc): %+v, %v, chunks %q; want abc streamed letter by letter", rep, err, chunks)
	}
}

func workersPrepare(t *testing.T, f *fleet) {
	ctx := fleettest.Context(t, 20*time.Second)
	client := tools.NewClient(f.connect(t, "workers"), f.names)
	j := job(tenantA, "p-1", "hello")
	msgs, err := client.Prepare(ctx, &j)
	if err != nil || len(msgs) != 2 || msgs[0].Content.Text != "prepared for "+tenantA {
		t.Errorf("prepare: %+v, %v; want the system prompt and the job's message", msgs, err)
	}
}

func tenantJobRunsTool(t *testing.T, f *fleet) {
	ctx := fleettest.Context(t, 20*time.Second)
	j := job(tenantA, "tool-1", "what is 17*23?")
	j.FleetTools = []string{"calculator"}
	ans, err := f.pubA.Complete(ctx, j)
	if err != nil {
		t.Fatal(err)
	}
	if ans.Content != "The calculator says 391." || len(ans.Tools) != 1 || ans.Tools[0].State != protocol.ToolDone || ans.Tools[0].Output != "391" {
		t.Errorf("A's job with the calculator: %q, tools %+v; want the tool's result", ans.Content, ans.Tools)
	}
}

// toolIdentitiesConfined: a tool server takes calls in its queue group
// only, streams only tool output; a preparation service only answers.
func toolIdentitiesConfined(t *testing.T, f *fleet) {
	n := f.names
	var got answers
	t.Run("tools", func(t *testing.T) {
		refused(t, f, "tools", []refusedAttack{
			{"see every tool call", trySub(n.AllTools())},
			{"take tool calls in another queue group", tryQueueSub(n.AllTools(), "evil")},
			{"call a tool", tryRequest(n.Tool("calculator"))},
			{"publish a job", tryPub(n.Jobs(tenantA))},
			{"read the replies", trySub(n.AllReplies())},
			{"take preparation requests", tryQueueSub(n.AllPrepares(), tools.PrepareServiceName)},
			{"the JetStream API", tryRequest("$JS.API.INFO")},
		}, &got)
	})
	t.Run("prepare", func(t *testing.T) {
		refused(t, f, "prepare", []refusedAttack{
			{"stream output into a tool call", tryPub(n.ToolOutput("x"))},
			{"serve a tool", tryQueueSub(n.Tool("calculator"), tools.ServiceName)},
			{"see every preparation request", trySub(n.AllPrepares())},
			{"publish a job", tryPub(n.Jobs(tenantA))},
			{"the JetStream API", tryRequest("$JS.API.INFO")},
		}, &got)
	})
	t.Logf("the server's answers to the tool servers and preparation services:\n  %s", strings.Join(got, "\n  "))
}
