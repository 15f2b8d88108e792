package isolation_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
)

// TestSharedFleet runs one fleet shared by tenants A and B, every process
// with the identity `chatfleet auth` generated for it: everything A may
// do works end to end, and everything B tries against A is refused.
func TestSharedFleet(t *testing.T) {
	f := newFleet(t)
	t.Run("tenant", func(t *testing.T) { tenantWorks(t, f) })
	t.Run("attacks", func(t *testing.T) { attacksRefused(t, f) })
	t.Run("operators", func(t *testing.T) { operatorsWork(t, f) })
}

func tenantWorks(t *testing.T, f *fleet) {
	ctx := fleettest.Context(t, 60*time.Second)

	t.Run("submit and stream", func(t *testing.T) {
		ans, err := f.pubA.Complete(ctx, job(tenantA, "a-1", "hello from acme"))
		if err != nil || ans.FinishReason != "stop" || ans.Content == "" {
			t.Fatalf("Complete = %+v, %v; want an answer", ans, err)
		}
	})

	t.Run("last event and attach from the stream", func(t *testing.T) {
		ev, found, err := f.pubA.LastEvent(ctx, tenantA, "a-1")
		if err != nil || !found || ev.Type != protocol.EventDone {
			t.Fatalf("LastEvent = %v %v %v, want the stored done event", ev.Type, found, err)
		}
		r, err := f.pubA.Attach(ctx, tenantA, "a-1")
		if err != nil {
			t.Fatal(err)
		}
		ans, err := r.Collect(ctx)
		if err != nil || ans.FinishReason != "stop" {
			t.Fatalf("attached reply = %+v, %v", ans, err)
		}
	})

	t.Run("a resubmitted request is read from the stream", func(t *testing.T) {
		r, err := f.pubA.Submit(ctx, job(tenantA, "a-1", "hello from acme"))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Stop()
		if ev := next(t, r); ev.Seq != 1 || ev.Type != protocol.EventMeta {
			t.Fatalf("first event = %+v, want the stored meta event", ev)
		}
	})

	t.Run("dedupe and cache", func(t *testing.T) {
		const prompt = "hold:acme:shared"
		var wg sync.WaitGroup
		answers := make([]*publisher.Answer, 2)
		errs := make([]error, 2)
		rs := make([]*publisher.Reply, 2)
		for i := range rs {
			r, err := f.pubA.Submit(ctx, job(tenantA, fmt.Sprintf("a-dedupe-%d", i), prompt))
			if err != nil {
				t.Fatal(err)
			}
			rs[i] = r
		}
		// Both have joined one generation once each has a meta event.
		for _, r := range rs {
			untilType(t, r, protocol.EventMeta)
		}
		f.gates.open(prompt)
		for i, r := range rs {
			wg.Add(1)
			go func() { // joined below
				defer wg.Done()
				defer r.Stop()
				answers[i], errs[i] = r.Collect(ctx)
			}()
		}
		wg.Wait()
		for i := range rs {
			if errs[i] != nil || answers[i].FinishReason != "stop" {
				t.Fatalf("request %d: %+v, %v", i, answers[i], errs[i])
			}
		}
		if n := f.llm.CallsFor(prompt); n != 1 {
			t.Fatalf("upstream calls for two identical requests = %d, want 1", n)
		}
		cached, err := f.pubA.Complete(ctx, job(tenantA, "a-cached", prompt))
		if err != nil || !cached.Cached || cached.Content != answers[0].Content {
			t.Fatalf("third request = %+v, %v; want the cached answer", cached, err)
		}
		if n := f.llm.CallsFor(prompt); n != 1 {
			t.Errorf("upstream calls after a cache hit = %d, want 1", n)
		}
		// The same request from B: never A's answer, from the cache or a
		// shared generation; B's own call to the upstream.
		f.gates.open(prompt)
		other, err := f.pubB.Complete(ctx, job(tenantB, "b-same", prompt))
		if err != nil || other.Cached {
			t.Fatalf("B's identical request = %+v, %v; want its own answer", other, err)
		}
		if n := f.llm.CallsFor(prompt); n != 2 {
			t.Errorf("upstream calls after B's identical request = %d, want 2", n)
		}
	})

	t.Run("the same request ID in two tenants", func(t *testing.T) {
		// The jobs stream's duplicate window spans every tenant: each
		// job's message ID names its tenant, so neither shadows the other.
		for _, p := range []struct {
			pub    *publisher.Publisher
			tenant string
		}{{f.pubB, tenantB}, {f.pubA, tenantA}} {
			ans, err := p.pub.Complete(ctx, job(p.tenant, "same-id", "which tenant am I, "+p.tenant))
			if err != nil || ans.FinishReason != "stop" {
				t.Fatalf("tenant %s: %+v, %v", p.tenant, ans, err)
			}
		}
	})

	t.Run("cancel", func(t *testing.T) {
		r, _ := f.held(t, f.pubA, tenantA, "a-cancel")
		untilType(t, r, protocol.EventChunk)
		if err := f.pubA.Cancel(ctx, tenantA, "a-cancel"); err != nil {
			t.Fatalf("cancel own request: %v", err)
		}
		if _, err := r.Collect(ctx); !errors.Is(err, publisher.ErrCancelled) {
			t.Fatalf("reply = %v, want cancelled", err)
		}
		if err := f.pubA.Cancel(ctx, tenantA, "a-cancel"); !errors.Is(err, publisher.ErrAlreadyFinished) {
			t.Errorf("cancel again = %v, want ErrAlreadyFinished", err)
		}
	})

	t.Run("a consumer lost while reading is recreated", func(t *testing.T) {
		// The ordered consumer Attach reads with goes away (deleted, as a
		// restarted server may lose it): it is created again with the
		// tenant's rights.
		_, prompt := f.held(t, f.pubA, tenantA, "a-reset")
		r, err := f.pubA.Attach(ctx, tenantA, "a-reset")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Stop()
		untilType(t, r, protocol.EventChunk)
		deleted := f.deleteConsumersOf(t, f.names.ReplyWrite(tenantA, "a-reset"))
		if deleted == 0 {
			t.Fatal("found no consumer of the reply to delete")
		}
		f.gates.open(prompt)
		if ev := untilType(t, r, protocol.EventDone); ev.FinishReason != "stop" {
			t.Fatalf("done = %+v", ev)
		}
	})
}

// deleteConsumersOf deletes, as the operators, every consumer of the
// replies stream filtered to subject; it returns how many.
func (f *fleet) deleteConsumersOf(t *testing.T, subject string) int {
	t.Helper()
	ctx := fleettest.Context(t, 10*time.Second)
	n := 0
	infos := f.top.Replies.ListConsumers(ctx)
	var names []string
	for ci := range infos.Info() {
		if ci.Config.FilterSubject == subject {
			names = append(names, ci.Name)
		}
	}
	if err := infos.Err(); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if err := f.top.Replies.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			t.Fatal(err)
		}
		n++
	}
	return n
}

// operatorsWork: the operators' identity does what operating a fleet
// needs: cancel any tenant's request, purge the cache, keep tenants'
// settings in a bucket of the fleet.
func operatorsWork(t *testing.T, f *fleet) {
	ctx := fleettest.Context(t, 30*time.Second)

	t.Run("cancel any tenant's request", func(t *testing.T) {
		r, _ := f.held(t, f.pubB, tenantB, "b-by-ops")
		untilType(t, r, protocol.EventChunk)
		if err := f.opsPub.Cancel(ctx, tenantB, "b-by-ops"); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Collect(ctx); !errors.Is(err, publisher.ErrCancelled) {
			t.Fatalf("reply = %v, want cancelled", err)
		}
	})

	t.Run("purge the cache", func(t *testing.T) {
		keys, err := f.top.Cache.ListKeysFiltered(ctx, tenantA+".>")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for k := range keys.Keys() {
			if err := f.top.Cache.Purge(ctx, k); err != nil {
				t.Fatalf("purge %s: %v", k, err)
			}
			n++
		}
		if n == 0 {
			t.Fatal("tenant A has no cached answer to purge")
		}
	})

	t.Run("the tenants bucket", func(t *testing.T) {
		js, _ := jetstream.New(f.ops)
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: tenantsBucket(f)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, tenantA, []byte(`{"max_inflight":3}`)); err != nil {
			t.Fatal(err)
		}
		if e, err := kv.Get(ctx, tenantA); err != nil || !strings.Contains(string(e.Value()), "max_inflight") {
			t.Fatalf("get = %v", err)
		}
	})
}

// tenantsBucket is the bucket of tenants' settings, e.g. chat_tenants.
func tenantsBucket(f *fleet) string {
	return strings.TrimSuffix(f.names.CacheBucket(), "_cache") + "_tenants"
}
