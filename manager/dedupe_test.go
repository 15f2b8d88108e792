package manager_test

import (
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/worker"
)

// gated returns upstream options whose every call stalls before its first
// token until release is closed.
func gated(release chan struct{}) []llmtest.Option {
	return []llmtest.Option{llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		rep := llmtest.DefaultReply(r)
		rep.StallAfter, rep.Release = -1, release
		return rep
	})}
}

// TestHerdOfAThousand: 1,000 identical concurrent requests over 3 workers
// (each on its own connection) cost exactly one upstream call, and every
// producer gets the same content and a done.
func TestHerdOfAThousand(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	f := fleettest.New(t, fleettest.Options{LLM: gated(release)})
	ws := []*worker.Worker{f.StartWorker(nil), f.StartWorker(nil), f.StartWorker(nil)}
	ctx := ctxFor(t, 2*time.Minute)

	subs := submitMany(t, ctx, f.Pub, userJob("the same question"), 1000)
	for _, s := range subs {
		<-s.metaRead // every request has been routed before any token exists
	}
	close(release)

	want := ""
	roles := map[protocol.Role]int{}
	byWorker := map[string]int{}
	for _, s := range subs {
		r := s.wait(t)
		if r.err != nil {
			t.Fatalf("%s", describe(r))
		}
		if want == "" {
			want = r.answer.Content
		}
		if r.answer.Content != want || r.answer.FinishReason != "stop" {
			t.Fatalf("content %q differs from %q", r.answer.Content, want)
		}
		roles[r.meta.Role]++
		byWorker[r.meta.Worker]++
	}
	if calls := f.LLM.Calls(); calls != 1 {
		t.Errorf("upstream calls = %d, want 1", calls)
	}
	if want != llmtest.Answer(f.LLM.Requests()[0]) {
		t.Errorf("content %q is not the upstream's answer", want)
	}
	if roles[protocol.RoleLeader] != 1 || roles[protocol.RoleFollower] != 999 {
		t.Errorf("roles = %v, want 1 leader and 999 followers", roles)
	}
	if len(byWorker) != 3 {
		t.Errorf("requests by worker = %v, want all 3 workers serving", byWorker)
	}
	st := statsOf(ws...)
	if st.UpstreamCalls != 1 || st.Leaders != 1 || st.Followers != 999 || st.Requests != 1000 {
		t.Errorf("stats = %+v", st)
	}
}

// TestHerdWithoutDedupe is the contrast: with dedupe and cache off, 1,000
// identical requests make 1,000 upstream calls.
func TestHerdWithoutDedupe(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	for range 3 {
		f.StartWorker(nil)
	}
	ctx := ctxFor(t, 2*time.Minute)
	job := userJob("the same question")
	job.Dedupe, job.Cache = protocol.Bool(false), protocol.Bool(false)
	subs := submitMany(t, ctx, f.Pub, job, 1000)
	for _, s := range subs {
		r := s.wait(t)
		if r.err != nil {
			t.Fatalf("%s", describe(r))
		}
		if r.meta.Role != protocol.RoleLeader {
			t.Fatalf("role = %s, want leader", r.meta.Role)
		}
	}
	if calls := f.LLM.Calls(); calls != 1000 {
		t.Errorf("upstream calls = %d, want 1000", calls)
	}
}
