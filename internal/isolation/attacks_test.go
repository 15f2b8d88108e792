package isolation_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/protocol"
)

// refusedAttack is something tenant B tries against tenant A, or against
// the fleet, that the server must refuse: B's user may not publish or
// subscribe there.
type refusedAttack struct {
	name string
	try  func(nc *nats.Conn) error // what B sends; an error here is the client's, not the server's
}

// attacksRefused tries, with tenant B's identity, everything B must not
// do, and records the server's answer to each (shown with go test -v).
func attacksRefused(t *testing.T, f *fleet) {
	ctx := fleettest.Context(t, 60*time.Second)
	api := f.envs["tenant-"+tenantB].NATSAPI + "." // B's JetStream API prefix: JS.chat.API.
	n := f.names
	replies, jobs := n.RepliesStream(), n.JobsStream()
	cacheKey := f.cacheKeyOf(t, tenantA)
	victim, victimPrompt := f.held(t, f.pubA, tenantA, "a-victim")
	untilType(t, victim, protocol.EventChunk)

	pub := func(subject string) func(*nats.Conn) error {
		return func(nc *nats.Conn) error { return nc.Publish(subject, []byte(`{}`)) }
	}
	request := func(subject string) func(*nats.Conn) error {
		return func(nc *nats.Conn) error { return nc.PublishRequest(subject, nats.NewInbox(), []byte(`{}`)) }
	}
	sub := func(subject string) func(*nats.Conn) error {
		return func(nc *nats.Conn) error { _, err := nc.SubscribeSync(subject); return err }
	}
	kv := func(bucket string) string { return "KV_" + bucket }
	attacks := []refusedAttack{
		{"publish a job on A's subject", pub(n.Jobs(tenantA))},
		{"subscribe to A's replies", sub(n.Prefix() + ".reply." + tenantA + ".>")},
		{"subscribe to every reply", sub(n.AllReplies())},
		{"subscribe to everything", sub(">")},
		{"subscribe to A's stored reply events", sub(n.Prefix() + ".write." + tenantA + ".>")},
		{"forge an event of A's reply", pub(n.ReplyWrite(tenantA, "a-victim"))},
		{"direct get of A's stored reply", request(api + "DIRECT.GET." + replies + "." + n.ReplyWrite(tenantA, "a-1"))},
		{"direct get of A's stored reply, default API prefix", request("$JS.API.DIRECT.GET." + replies + "." + n.ReplyWrite(tenantA, "a-1"))},
		{"direct get by sequence (any subject)", request(api + "DIRECT.GET." + replies)},
		{"attach: consumer with A's filter", request(api + "CONSUMER.CREATE." + replies + ".x." + n.ReplyWrite(tenantA, "a-1"))},
		{"consumer without a filter", request(api + "CONSUMER.CREATE." + replies + ".x")},
		{"list the replies stream's consumers", request(api + "CONSUMER.LIST." + replies)},
		{"consumer names of the replies stream", request(api + "CONSUMER.NAMES." + replies)},
		{"delete the workers' consumer", request(api + "CONSUMER.DELETE." + jobs + "." + n.WorkersConsumer())},
		{"read A's cache entry (direct get)", request(api + "DIRECT.GET." + kv(n.CacheBucket()) + ".$KV." + n.CacheBucket() + "." + cacheKey)},
		{"read A's cache entries (consumer)", request(api + "CONSUMER.CREATE." + kv(n.CacheBucket()) + ".x.$KV." + n.CacheBucket() + "." + tenantA + ".>")},
		{"read the cache bucket (stream info)", request(api + "STREAM.INFO." + kv(n.CacheBucket()))},
		{"subscribe to cache writes", sub("$KV." + n.CacheBucket() + ".>")},
		{"poison A's cache entry", pub("$KV." + n.CacheBucket() + "." + cacheKey)},
		{"read A's cancel entry (direct get)", request(api + "DIRECT.GET." + kv(n.CancelBucket()) + "." + n.CancelSubject(tenantA, "a-cancel"))},
		{"read A's cancel entries (consumer)", request(api + "CONSUMER.CREATE." + kv(n.CancelBucket()) + ".x.$KV." + n.CancelBucket() + "." + tenantA + ".>")},
		{"cancel A's request", pub(n.CancelSubject(tenantA, "a-victim"))},
		{"read the leases (direct get)", request(api + "DIRECT.GET." + kv(n.InflightBucket()) + ".$KV." + n.InflightBucket() + "._maintenance")},
		{"take the maintenance lease", pub("$KV." + n.InflightBucket() + "._maintenance")},
		{"write B's own quota in the tenants bucket", pub("$KV." + tenantsBucket(f) + "." + tenantB)},
		{"read the tenants bucket", request(api + "DIRECT.GET." + kv(tenantsBucket(f)) + ".$KV." + tenantsBucket(f) + "." + tenantA)},
		{"forge a max-deliveries advisory", pub("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + jobs + "." + n.WorkersConsumer())},
		{"create a stream", request(api + "STREAM.CREATE.EVIL")},
		{"delete the jobs stream", request(api + "STREAM.DELETE." + jobs)},
		{"update the replies stream", request(api + "STREAM.UPDATE." + replies)},
		{"purge the jobs stream", request(api + "STREAM.PURGE." + jobs)},
		{"delete the jobs stream, default API prefix", request("$JS.API.STREAM.DELETE." + jobs)},
		{"pull jobs from the workers' consumer", request(api + "CONSUMER.MSG.NEXT." + jobs + "." + n.WorkersConsumer())},
		{"a worker's control subject", pub(n.Control("w1"))},
		{"a worker's status", request(n.Prefix() + ".status.w1")},
		{"the workers' services", request("$SRV.PING")},
	}
	var answers []string
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			errs := make(errorsOf, 8)
			nc := f.connect(t, "tenant-"+tenantB, errs.handler())
			if err := a.try(nc); err != nil {
				t.Fatalf("the client refused to send it: %v", err)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			refusal := errs.refusal(t)
			if !isPermissionViolation(refusal) {
				t.Fatalf("the server answered %v, want a permissions violation", refusal)
			}
			answers = append(answers, fmt.Sprintf("%s: %v", a.name, refusal))
		})
	}

	t.Run("a consumer whose filter is not the create subject's", func(t *testing.T) {
		// B may create consumers only with the subject filtered to its own
		// replies; the server compares the filter B asks for with it.
		own := n.ReplyWrite(tenantB, "x")
		for _, cfg := range []map[string]any{
			{"name": "evil", "filter_subject": n.ReplyWrite(tenantA, "a-1")},
			{"name": "evil", "filter_subjects": []string{n.ReplyWrite(tenantA, "a-1")}},
			{"name": "evil"},
		} {
			body, _ := json.Marshal(map[string]any{"stream_name": replies, "config": cfg})
			nc := f.connect(t, "tenant-"+tenantB)
			msg, err := nc.RequestWithContext(ctx, api+"CONSUMER.CREATE."+replies+".evil."+own, body)
			if err != nil {
				t.Fatal(err)
			}
			var resp struct {
				Error *jetstream.APIError `json:"error"`
			}
			if err := json.Unmarshal(msg.Data, &resp); err != nil || resp.Error == nil {
				t.Fatalf("consumer %v: %s, want an error", cfg, msg.Data)
			}
			answers = append(answers, fmt.Sprintf("consumer create on B's subject with config %v: %v", cfg, resp.Error))
		}
	})

	t.Run("the publisher as tenant A", func(t *testing.T) {
		// Each request is refused: no answer comes, the call times out.
		short := func() context.Context {
			c, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			t.Cleanup(cancel)
			return c
		}
		if _, err := f.pubB.Attach(short(), tenantA, "a-1"); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("B's publisher attaching to A's request: %v, want no answer", err)
		}
		if err := f.pubB.Cancel(short(), tenantA, "a-victim"); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("B's publisher cancelling A's request: %v, want no answer", err)
		}
		if _, found, err := f.pubB.LastEvent(short(), tenantA, "a-1"); found || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("B's publisher reading A's last event: found %v, %v; want no answer", found, err)
		}
	})

	t.Run("B's inboxes are B's own", func(t *testing.T) {
		inboxesOfB(t, f)
	})

	t.Run("answers sent where B says go nowhere", func(t *testing.T) {
		answers = append(answers, reflectionsGoNowhere(t, f)...)
	})

	t.Run("A's request was left alone", func(t *testing.T) {
		f.gates.open(victimPrompt)
		ans, err := victim.Collect(ctx)
		if err != nil || ans.FinishReason != "stop" {
			t.Fatalf("A's request under attack: %+v, %v; want done", ans, err)
		}
	})

	t.Run("events of B delivered on A's reply subject", func(t *testing.T) {
		answers = append(answers, pushIntoAsReply(t, f))
	})

	sort.Strings(answers)
	t.Logf("the server's answers to tenant %s:\n  %s", tenantB, strings.Join(answers, "\n  "))
}

// cacheKeyOf returns a key of the tenant's cached answers (the
// operators list them), for attacks on it.
func (f *fleet) cacheKeyOf(t *testing.T, tenant string) string {
	t.Helper()
	ctx := fleettest.Context(t, 10*time.Second)
	keys, err := f.top.Cache.ListKeysFiltered(ctx, tenant+".>")
	if err != nil {
		t.Fatal(err)
	}
	for k := range keys.Keys() {
		_ = keys.Stop()
		return k
	}
	t.Fatalf("tenant %s has no cached answer", tenant)
	return ""
}

// inboxesOfB: B may subscribe to _INBOX.> in its own account, and gets
// its own answers there and none of A's: A's inboxes live in A's account.
func inboxesOfB(t *testing.T, f *fleet) {
	ctx := fleettest.Context(t, 10*time.Second)
	nc := f.connect(t, "tenant-"+tenantB)
	all, err := nc.SubscribeSync("_INBOX.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// A's answers first: each of these requests gets one in A's inbox.
	if _, _, err := f.pubA.LastEvent(ctx, tenantA, "a-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.pubA.Complete(ctx, job(tenantA, "a-inbox", "where do answers go")); err != nil {
		t.Fatal(err)
	}
	// Then one of B's own: everything that reached the subscription
	// before it would have arrived before it.
	api := f.envs["tenant-"+tenantB].NATSAPI
	if _, err := nc.RequestWithContext(ctx, api+".DIRECT.GET."+f.names.RepliesStream()+"."+f.names.ReplyWrite(tenantB, "b-same"), nil); err != nil {
		t.Fatal(err)
	}
	msg, err := all.NextMsgWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := msg.Header.Get("Nats-Subject"); got != f.names.ReplyWrite(tenantB, "b-same") {
		t.Fatalf("B's inbox subscription got %s first (subject %q), want B's own answer", msg.Subject, got)
	}
}

// reflectionsGoNowhere: the server does not check a reply subject
// against the publisher's permissions, and JetStream answers there (an
// ack, a direct get's message). Inside the fleet account such an answer
// is stored by whatever stream listens on it, a cancel key, say; B's
// reply subjects are in B's own account, where no stream listens. A user
// of the fleet account doing the same is the control: its answer lands.
func reflectionsGoNowhere(t *testing.T, f *fleet) []string {
	ctx := fleettest.Context(t, 10*time.Second)
	n := f.names
	target := n.CancelSubject(tenantA, "a-victim")
	nc := f.connect(t, "tenant-"+tenantB)
	api := f.envs["tenant-"+tenantB].NATSAPI
	tries := map[string]func() error{
		"a job's ack": func() error {
			return nc.PublishRequest(n.Jobs(tenantB), target, []byte(`{"v":1,"id":"b-reflect","tenant":"beta"}`))
		},
		"a direct get's answer": func() error {
			return nc.PublishRequest(api+".DIRECT.GET."+n.RepliesStream()+"."+n.ReplyWrite(tenantB, "b-same"), target, nil)
		},
		"a cancel's ack": func() error {
			return nc.PublishRequest(n.CancelSubject(tenantB, "b-reflect"), target, []byte("now"))
		},
	}
	var out []string
	for what, try := range tries {
		if err := try(); err != nil {
			t.Fatal(err)
		}
		out = append(out, "answer to "+what+" with A's cancel key as the reply subject: accepted, and delivered in B's own account, where nothing stores it")
	}
	// B's own request after them: answered once they were handled.
	if _, err := nc.RequestWithContext(ctx, api+".DIRECT.GET."+n.RepliesStream()+"."+n.ReplyWrite(tenantB, "b-same"), nil); err != nil {
		t.Fatal(err)
	}
	// The control, from the fleet account: it lands in the cancel bucket.
	control := n.CancelSubject(tenantA, "control")
	if err := f.ops.PublishRequest(n.CancelSubject(tenantB, "control"), control, []byte("now")); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := f.top.Cancels.Get(ctx, n.RequestKey(tenantA, "control")); err == nil {
			break
		} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatal("the control's reflected ack never reached the cancel bucket: the test shows nothing")
		case <-time.After(10 * time.Millisecond): // a fallback poll: nothing signals a stored key
		}
	}
	if _, err := f.top.Cancels.Get(ctx, n.RequestKey(tenantA, "a-victim")); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("A's cancel key after B's reflections: %v, want not found", err)
	}
	if err := f.top.Cancels.Purge(ctx, n.RequestKey(tenantA, "control")); err != nil {
		t.Fatal(err)
	}
	return out
}

// pushIntoAsReply: nats-server does not check a push consumer's deliver
// subject against its creator's permissions (nats-server issue 8274). B,
// allowed to create consumers of its own stored replies, can have the
// server deliver its own reply events on any subject of the fleet
// account something listens on: A's live reply subject, for one. The
// events are B's (B's tenant's worker wrote them, for B's job); the
// publisher knows its job's sequence from the publish ack and drops them.
// A raw subscriber that does not check Chatfleet-Job-Seq is fooled.
func pushIntoAsReply(t *testing.T, f *fleet) string {
	ctx := fleettest.Context(t, 20*time.Second)
	n := f.names
	const id = "a-target"
	if _, err := f.pubB.Complete(ctx, job(tenantB, id, "B's answer under A's request ID")); err != nil {
		t.Fatal(err)
	}
	r, prompt := f.held(t, f.pubA, tenantA, id)
	first := untilType(t, r, protocol.EventChunk)
	raw, err := f.connect(t, "tenant-"+tenantA).SubscribeSync(n.Reply(tenantA, id))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"stream_name": n.RepliesStream(), "config": map[string]any{
		"name": "inject", "filter_subject": n.ReplyWrite(tenantB, id), "deliver_subject": n.Reply(tenantA, id),
		"ack_policy": "none", "deliver_policy": "all"}})
	api := f.envs["tenant-"+tenantB].NATSAPI
	msg, err := f.connect(t, "tenant-"+tenantB).RequestWithContext(ctx,
		api+".CONSUMER.CREATE."+n.RepliesStream()+".inject."+n.ReplyWrite(tenantB, id), body)
	if err != nil {
		t.Fatal(err)
	}
	answer := "push consumer of B's own replies delivering on A's reply subject: " + string(msg.Data)
	// A's gate is still shut: a done event on A's subject now is B's.
	for {
		m, err := raw.NextMsgWithContext(ctx)
		if err != nil {
			t.Fatalf("B's events never reached A's reply subject (if nats-server now checks deliver subjects, update the README): %v", err)
		}
		if ev, err := protocol.DecodeEvent(m.Data); err == nil && ev.Type == protocol.EventDone {
			answer = "push consumer of B's own replies delivering on A's reply subject: created; B's events delivered there, the publisher drops them"
			break
		}
	}
	f.gates.open(prompt)
	ans, err := r.Collect(ctx)
	if err != nil || ans.FinishReason != "stop" {
		t.Fatalf("A's reply = %+v, %v", ans, err)
	}
	if got := first.Content + ans.Content; strings.Contains(got, "under A's request ID") || got != f.answerOf(t, tenantA, id) {
		t.Fatalf("A's reply holds %q, not A's own answer", got)
	}
	return answer
}

// answerOf reads a request's answer back from the replies stream, as the
// operators.
func (f *fleet) answerOf(t *testing.T, tenant, id string) string {
	t.Helper()
	ctx := fleettest.Context(t, 10*time.Second)
	r, err := f.opsPub.Attach(ctx, tenant, id)
	if err != nil {
		t.Fatal(err)
	}
	ans, err := r.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ans.Content
}
