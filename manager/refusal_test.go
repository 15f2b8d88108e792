package manager_test

import (
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/worker"
)

// TestRefusalAndReasoningReachEveryRole: a model's reasoning and its
// refusal are not content, and must not be dropped: the leader, local and
// remote followers and a later cache hit all get them.
func TestRefusalAndReasoningReachEveryRole(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithScript(func(llmtest.Request) llmtest.Reply {
		return llmtest.Reply{
			Reasoning:  []string{"The user asks ", "for something unsafe."},
			Refusal:    []string{"I can't ", "help with that."},
			StallAfter: -1, Release: release,
		}
	})}})
	// 10 request slots each: the 20 held requests must spread over both.
	for range 2 {
		f.StartWorker(func(c *worker.Config) { c.Manager.MaxConcurrentRequests = 10 })
	}
	ctx := ctxFor(t, time.Minute)
	job := userJob("something unsafe")

	check := func(r result) {
		t.Helper()
		if r.err != nil {
			t.Fatalf("%s", describe(r))
		}
		a := r.answer
		if a.Reasoning != "The user asks for something unsafe." || a.Refusal != "I can't help with that." || a.Content != "" {
			t.Errorf("%s: reasoning %q, refusal %q, content %q", r.meta.Role, a.Reasoning, a.Refusal, a.Content)
		}
	}
	subs := submitMany(t, ctx, f.Pub, job, 20)
	for _, s := range subs {
		<-s.metaRead
	}
	close(release)
	roles, workers := map[protocol.Role]int{}, map[string]bool{}
	for _, s := range subs {
		r := s.wait(t)
		check(r)
		roles[r.meta.Role]++
		workers[r.meta.Worker] = true
	}
	if roles[protocol.RoleLeader] != 1 || roles[protocol.RoleFollower] != 19 || len(workers) != 2 {
		t.Errorf("roles %v on %d workers; want 1 leader, 19 followers, on both workers (remote followers too)", roles, len(workers))
	}

	hit := submit(t, ctx, f.Pub, job).wait(t)
	check(hit)
	if hit.meta.Role != protocol.RoleCache || f.LLM.Calls() != 1 {
		t.Errorf("later request: role %s, %d upstream calls; want a cache hit and 1 call", hit.meta.Role, f.LLM.Calls())
	}
}
