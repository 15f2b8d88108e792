package manager_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/worker"
)

// midStream returns upstream options whose first call sends 3 tokens and
// stalls until release is closed; later calls answer at once.
func midStream(release chan struct{}) []llmtest.Option {
	return []llmtest.Option{llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		rep := llmtest.DefaultReply(r)
		if r.N == 1 {
			rep.StallAfter, rep.Release = 3, release
		}
		return rep
	})}
}

func capacity(n int) func(*worker.Config) {
	return func(c *worker.Config) { c.Manager.MaxConcurrentRequests = n }
}

// TestJoinMidStreamAndAfter: requests joining mid-stream on another worker
// (one remote, one local to that worker) read the history first and then
// the live tokens; a request arriving after the end is served from the
// cache. One upstream call in all. (Joining before the first token is
// TestHerdOfAThousand.)
func TestJoinMidStreamAndAfter(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	f := fleettest.New(t, fleettest.Options{LLM: midStream(release)})
	noMerge := func(c *worker.Config) {
		c.Manager.MaxConcurrentRequests = 1 // the leader fills w1
		c.Manager.ChunkWindow = -1
	}
	w1 := f.StartWorker(noMerge)
	ctx := ctxFor(t, time.Minute)
	job := userJob("join at any time")

	leader, err := f.Pub.Submit(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	defer leader.Stop()
	for i := 0; i < 4; i++ { // meta and the 3 tokens sent before the stall
		if ev, err := leader.Next(ctx); err != nil || (i > 0 && ev.Type != protocol.EventChunk) {
			t.Fatalf("event %d: %+v %v", i, ev, err)
		}
	}
	w2 := f.StartWorker(noMerge)
	mid := submit(t, ctx, f.Pub, job) // a remote follower, on w2
	<-mid.metaRead
	mid2 := submit(t, ctx, f.Pub, job) // w2's second: joins w2's copy in memory
	<-mid2.metaRead
	close(release)

	want := llmtest.Answer(f.LLM.Requests()[0])
	for name, s := range map[string]*submitted{"mid": mid, "mid2": mid2} {
		r := s.wait(t)
		if r.err != nil {
			t.Fatalf("%s: %s", name, describe(r))
		}
		if r.meta.Role != protocol.RoleFollower || r.meta.Worker != w2.ID() {
			t.Errorf("%s: meta %+v", name, r.meta)
		}
		if r.answer.Content != want {
			t.Errorf("%s: content %q, want %q", name, r.answer.Content, want)
		}
	}
	rest, err := leader.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(want, rest.Content) || rest.FinishReason != "stop" {
		t.Errorf("leader's rest = %+v", rest)
	}

	after := submit(t, ctx, f.Pub, job).wait(t)
	if after.err != nil || after.meta.Role != protocol.RoleCache || !after.answer.Cached {
		t.Fatalf("after the end: %s", describe(after))
	}
	if after.answer.Content != want || after.answer.Usage == nil {
		t.Errorf("cached answer = %+v", after.answer)
	}
	if f.LLM.Calls() != 1 {
		t.Errorf("upstream calls = %d, want 1", f.LLM.Calls())
	}
	if st := statsOf(w1, w2); st.CacheHits != 1 || st.Followers != 2 || st.Leaders != 1 {
		t.Errorf("stats = %+v", st)
	}
}

// TestSlowFollowerLosesNothing: a producer that does not read while the
// answer streams still gets every event, and does not hold anyone up.
func TestSlowFollowerLosesNothing(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		rep := llmtest.DefaultReply(r)
		rep.Tokens = make([]string, 200)
		for i := range rep.Tokens {
			rep.Tokens[i] = fmt.Sprintf("t%d ", i)
		}
		rep.Delay = 100 * time.Microsecond
		return rep
	})}})
	f.StartWorker(func(c *worker.Config) { c.Manager.ChunkWindow = -1 })
	ctx := ctxFor(t, time.Minute)
	job := userJob("many tokens")
	slow, err := f.Pub.Submit(ctx, job) // not read until the fast one is done
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Stop()
	fast, err := f.Pub.Complete(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	got, err := slow.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.Content != fast.Content || !strings.HasPrefix(got.Content, "t0 t1 ") || !strings.HasSuffix(got.Content, "t199 ") {
		t.Errorf("slow follower got %d bytes, fast %d", len(got.Content), len(fast.Content))
	}
}

// TestFollowersDoNotStarveLeaders: a worker with 2 request slots and 1
// upstream slot takes 40 followers of a stalled generation, and still
// pulls and routes a different job.
func TestFollowersDoNotStarveLeaders(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	f := fleettest.New(t, fleettest.Options{LLM: gated(release)})
	f.StartWorker(func(c *worker.Config) {
		c.Manager.MaxConcurrentRequests = 2
		c.Manager.MaxConcurrentLLMStreams = 1
		c.Manager.MaxConcurrentFollowers = 100
	})
	ctx := ctxFor(t, time.Minute)
	herd := submitMany(t, ctx, f.Pub, userJob("popular"), 41)
	for _, s := range herd {
		<-s.metaRead
	}
	other := submit(t, ctx, f.Pub, userJob("something else"))
	<-other.metaRead
	if other.res.err != nil || other.res.meta.Role != protocol.RoleLeader {
		t.Fatalf("the other job was not routed as a leader: %s", describe(other.res))
	}
	close(release)
	for _, s := range append(herd, other) {
		if r := s.wait(t); r.err != nil {
			t.Fatal(describe(r))
		}
	}
	if f.LLM.Calls() != 2 {
		t.Errorf("upstream calls = %d, want 2", f.LLM.Calls())
	}
}
