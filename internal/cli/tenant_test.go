package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/worker"
)

// tenantShow runs `tenant show --json NAME` and decodes it.
func tenantShow(t *testing.T, ctx context.Context, name string) map[string]any {
	t.Helper()
	res := run(ctx, "", "tenant", "show", "--json", name)
	if res.code != 0 {
		t.Fatalf("tenant show: %v", res)
	}
	checkJSONConvention(t, res.out)
	var out map[string]any
	if err := json.Unmarshal([]byte(res.out), &out); err != nil {
		t.Fatalf("tenant show --json: %v\n%s", err, res.out)
	}
	return out
}

// TestTenantCommands: set (merging the limits given with those set
// before), ls, show with limits and usage, pause and resume reaching the
// workers live, rm; and the command lines they refuse.
func TestTenantCommands(t *testing.T) {
	f := newFleet(t, nil)
	ctx := fleettest.Context(t, time.Minute)

	if res := run(ctx, "", "tenant", "ls"); res.code != 0 || !strings.Contains(res.out, "no tenants") {
		t.Fatalf("ls with none: %v", res)
	}
	res := run(ctx, "", "tenant", "set", "acme", "--max-inflight", "2", "--tokens-per-minute", "1000")
	if res.code != 0 || res.out != "tenant acme: active · max queued none · max in flight 2 · tokens/minute 1000 · tokens/day none · at a limit: wait\n" {
		t.Fatalf("set: %v", res)
	}
	if res := run(ctx, "", "tenant", "set", "--max-queued", "5", "--on-limit", "reject", "acme"); res.code != 0 ||
		!strings.Contains(res.out, "max queued 5 · max in flight 2 · tokens/minute 1000") || !strings.Contains(res.out, "at a limit: reject") {
		t.Fatalf("set again, flags first: %v", res)
	}
	if res := run(ctx, "", "tenant", "ls"); res.code != 0 || !strings.Contains(res.out, "acme") || !strings.Contains(res.out, "max queued 5") {
		t.Fatalf("ls: %v", res)
	}

	job := userJob("acme", "acme-1", "count me")
	job.Model = testModel
	if _, err := f.Pub.Complete(ctx, job); err != nil {
		t.Fatal(err)
	}
	// The worker counts the job once settled, just after its reply.
	var show map[string]any
	for deadline := time.Now().Add(10 * time.Second); ; {
		show = tenantShow(t, ctx, "acme")
		if show["usage"].(map[string]any)["done"] == 1.0 || time.Now().After(deadline) {
			break
		}
	}
	limits := show["limits"].(map[string]any)
	usage := show["usage"].(map[string]any)
	if show["in_bucket"] != true || limits["max_inflight"] != 2.0 || limits["max_queued"] != 5.0 || show["workers"] != 1.0 ||
		usage["done"] != 1.0 || usage["prompt_tokens"] == 0.0 || show["tokens_this_minute"] == 0.0 {
		t.Errorf("show --json: %v", show)
	}
	if res := run(ctx, "", "tenant", "show", "acme"); res.code != 0 || !strings.Contains(res.out, "0 of 2 generations in flight") ||
		!strings.Contains(res.out, "1 done") {
		t.Errorf("show: %v", res)
	}
	if res := run(ctx, "", "tenant", "show", "nobody"); res.code != 0 || !strings.Contains(res.out, "not in the tenants bucket") {
		t.Errorf("show of a tenant without an entry: %v", res)
	}

	if res := run(ctx, "", "tenant", "pause", "acme"); res.code != 0 || res.out != "tenant acme paused\n" {
		t.Fatalf("pause: %v", res)
	}
	paused := userJob("acme", "acme-2", "wait for me")
	paused.Model = testModel
	r, err := f.Pub.Submit(ctx, paused)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	if ev, err := r.Next(ctx); err != nil || ev.Reason != protocol.ReasonTenantPaused {
		t.Fatalf("a job of the paused tenant: %+v, %v", ev, err)
	}
	if res := run(ctx, "", "tenant", "resume", "acme"); res.code != 0 || res.out != "tenant acme resumed\n" {
		t.Fatalf("resume: %v", res)
	}
	if ans, err := r.Collect(ctx); err != nil || ans.FinishReason != "stop" {
		t.Fatalf("the job after the resume: %+v, %v", ans, err)
	}

	if res := run(ctx, "", "tenant", "rm", "acme"); res.code != 0 || !strings.Contains(res.out, "removed") {
		t.Fatalf("rm: %v", res)
	}
	if res := run(ctx, "", "tenant", "ls"); !strings.Contains(res.out, "no tenants") {
		t.Errorf("ls after rm: %v", res)
	}
	for _, args := range [][]string{
		{"tenant"}, {"tenant", "set"}, {"tenant", "frob", "acme"}, {"tenant", "set", "acme", "--max-inflight", "-1"},
		{"tenant", "set", "acme", "--on-limit", "drop"}, {"tenant", "set", "ac.me"}, {"tenant", "pause", "acme", "--max-queued", "1"},
		{"tenant", "ls", "acme"},
	} {
		if res := run(ctx, "", args...); res.code != 2 {
			t.Errorf("%v: %v; want exit 2", args, res)
		}
	}
	if res := run(ctx, "", "tenant", "rm", "nobody"); res.code != 1 || !strings.Contains(res.err, "no tenant nobody") {
		t.Errorf("rm of a tenant without an entry: %v", res)
	}
}

// TestTenantCancel: cancelling a tenant ends every request of it, queued
// (of every priority) or running (a follower and its leader both), while
// another tenant's queued job goes on.
func TestTenantCancel(t *testing.T) {
	stall, release := fleettest.Stalled()
	defer release()
	f := newFleet(t, func(c *worker.Config) { c.Manager.MaxConcurrentRequests = 2 }, stall)
	ctx := fleettest.Context(t, time.Minute)
	submit := func(tenant, id, prompt string, p ...protocol.Priority) *replyWatch {
		j := userJob(tenant, id, prompt)
		j.Model = testModel
		if len(p) > 0 {
			j.Priority = p[0]
		}
		r, err := f.Pub.Submit(ctx, j)
		if err != nil {
			t.Fatal(err)
		}
		return watchReply(ctx, r)
	}
	leader := submit("acme", "run-1", "one")
	if err := f.LLM.WaitCalls(ctx, 1); err != nil {
		t.Fatal(err)
	}
	follower := submit("acme", "run-1b", "one")
	<-follower.meta
	second := submit("acme", "run-2", "two")
	if err := f.LLM.WaitCalls(ctx, 2); err != nil { // the worker's two request slots are taken
		t.Fatal(err)
	}
	queued := []*replyWatch{submit("acme", "q-1", "three", protocol.PriorityLow), submit("acme", "q-2", "four", protocol.PriorityHigh)}
	if res := run(ctx, "", "tenant", "show", "--json", "acme"); res.code != 0 || !strings.Contains(res.out, `"queued":5`) {
		t.Errorf("tenant show: %v; want its 5 jobs of every priority counted", res)
	}
	other := submit("other", "o-1", "five")

	res := run(ctx, "", "tenant", "cancel", "acme")
	if res.code != 0 || res.out != "cancel requested for 5 requests of tenant acme, queued or running\n" {
		t.Fatalf("tenant cancel: %v", res)
	}
	for i, w := range append([]*replyWatch{leader, follower, second}, queued...) {
		if end := w.end(); end.Type != protocol.EventCancelled {
			t.Errorf("acme's request %d ended %+v, want cancelled", i, end)
		}
	}
	if n := f.LLM.CallsFor("three") + f.LLM.CallsFor("four"); n != 0 {
		t.Errorf("cancelled queued jobs called the upstream %d times", n)
	}
	if err := f.LLM.WaitCalls(ctx, 3); err != nil { // the other tenant's job, pulled once slots freed
		t.Fatal(err)
	}
	release()
	if end := other.end(); end.Type != protocol.EventDone {
		t.Errorf("the other tenant's job ended %+v", end)
	}
}

// TestCachePurge: purging by tenant removes only that tenant's answers, by
// key only that one, and without flags every one.
func TestCachePurge(t *testing.T) {
	f := newFleet(t, nil)
	ctx := fleettest.Context(t, time.Minute)
	ask := func(tenant, prompt string) bool {
		j := userJob(tenant, "", prompt)
		j.Model = testModel
		ans, err := f.Pub.Complete(ctx, j)
		if err != nil {
			t.Fatal(err)
		}
		return ans.Cached
	}
	for _, q := range [][2]string{{"t1", "a"}, {"t1", "b"}, {"t2", "a"}, {"t3", "a"}} {
		ask(q[0], q[1])
	}
	if res := run(ctx, "", "cache", "purge", "--tenant", "t1"); res.code != 0 || res.out != "purged 2 cached answers (tenant t1)\n" {
		t.Fatalf("purge t1: %v", res)
	}
	if ask("t1", "a") || !ask("t2", "a") {
		t.Error("after purging t1: t1's answer still cached, or t2's gone")
	}
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	kv, err := js.KeyValue(ctx, "chat_cache")
	if err != nil {
		t.Fatal(err)
	}
	key := onlyKey(t, ctx, kv, "t2.*")
	if res := run(ctx, "", "cache", "purge", "--key", key); res.code != 0 || res.out != "purged 1 cached answers (key "+key+")\n" {
		t.Fatalf("purge one key: %v", res)
	}
	if ask("t2", "a") || !ask("t3", "a") {
		t.Error("after purging t2's key: it is still cached, or t3's is gone")
	}
	if res := run(ctx, "", "cache", "purge"); res.code != 0 || !strings.Contains(res.out, "(all tenants)") {
		t.Fatalf("purge all: %v", res)
	}
	if ask("t3", "a") {
		t.Error("after purging all: t3's answer still cached")
	}
	for _, args := range [][]string{{"cache"}, {"cache", "purge", "--key", "abc"}, {"cache", "purge", "--tenant", "t1", "--key", "t2.abc"},
		{"cache", "purge", "extra"}} {
		if res := run(ctx, "", args...); res.code != 2 {
			t.Errorf("%v: %v; want exit 2", args, res)
		}
	}
}

// onlyKey returns the one key of kv matching filter.
func onlyKey(t *testing.T, ctx context.Context, kv jetstream.KeyValue, filter string) string {
	t.Helper()
	keys, err := kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for k := range keys.Keys() {
		out = append(out, k)
	}
	if len(out) != 1 {
		t.Fatalf("keys %s: %v, want one", filter, out)
	}
	return out[0]
}

// replyWatch reads a reply in a goroutine the test owns (end waits for
// it).
type replyWatch struct {
	meta chan struct{} // closed once the first event arrived
	done chan struct{}
	last protocol.Event
}

func watchReply(ctx context.Context, r *publisher.Reply) *replyWatch {
	w := &replyWatch{meta: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer r.Stop()
		first := true
		for ev, err := range r.Events(ctx) {
			if err != nil {
				w.last = protocol.Event{Type: "read failed: " + protocol.EventType(err.Error())}
				break
			}
			w.last = ev
			if first {
				first = false
				close(w.meta)
			}
		}
		if first {
			close(w.meta)
		}
	}()
	return w
}

// end waits for the reply to end and returns its last event.
func (w *replyWatch) end() protocol.Event {
	<-w.done
	return w.last
}
