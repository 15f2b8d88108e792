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
	"github.com/chatfleet/chatfleet/tools"
)

// refusedAttack is something tenant B tries against tenant A, or against
// the fleet, that the server must refuse: B's user may not publish or
// subscribe there.
type refusedAttack struct {
	name string
	try  func(nc *nats.Conn) error // what B sends; an error here is the client's, not the server's
}

// answers records the server's answer to each attack, for the log.
type answers []string

func (a *answers) add(format string, args ...any) { *a = append(*a, fmt.Sprintf(format, args...)) }

// attacksRefused tries, with tenant B's identity, everything B must not
// do, and logs the server's answer to each (shown with go test -v).
func attacksRefused(t *testing.T, f *fleet) {
	victim, victimPrompt := f.held(t, f.pubA, tenantA, "a-victim")
	untilType(t, victim, protocol.EventChunk)
	var got answers
	refused(t, f, "tenant-"+tenantB, refusedAttacks(f, f.cacheKeyOf(t, tenantA)), &got)
	runSteps(t, f, []step{
		{"a consumer whose filter is not the create subject's", func(t *testing.T, f *fleet) { filterMismatch(t, f, &got) }},
		{"the publisher as tenant A", publisherAsA},
		{"B's inboxes are B's own", inboxesOfB},
		{"answers sent where B says go nowhere", func(t *testing.T, f *fleet) { reflectionsGoNowhere(t, f, &got) }},
		{"A's request was left alone", func(t *testing.T, f *fleet) {
			f.gates.open(victimPrompt)
			if ans, err := victim.Collect(fleettest.Context(t, 20*time.Second)); err != nil || ans.FinishReason != "stop" {
				t.Fatalf("A's request under attack: %+v, %v; want done", ans, err)
			}
		}},
		{"events of B delivered on A's reply subject", func(t *testing.T, f *fleet) { pushIntoAsReply(t, f, &got) }},
	})
	sort.Strings(got)
	t.Logf("the server's answers to tenant %s:\n  %s", tenantB, strings.Join(got, "\n  "))
}

// refused tries each attack, as identity on a connection of its own, and
// checks that the server refuses it; it records the server's answers.
func refused(t *testing.T, f *fleet, identity string, attacks []refusedAttack, got *answers) {
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			errs := make(errorsOf, 8)
			nc := f.connect(t, identity, errs.handler())
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
			got.add("%s: %v", a.name, refusal)
		})
	}
}

// Attacks: what a connection sends.
func tryPub(subject string) func(*nats.Conn) error {
	return func(nc *nats.Conn) error { return nc.Publish(subject, []byte(`{}`)) }
}

func tryRequest(subject string) func(*nats.Conn) error {
	return func(nc *nats.Conn) error { return nc.PublishRequest(subject, nats.NewInbox(), []byte(`{}`)) }
}

func trySub(subject string) func(*nats.Conn) error {
	return func(nc *nats.Conn) error { _, err := nc.SubscribeSync(subject); return err }
}

func tryQueueSub(subject, queue string) func(*nats.Conn) error {
	return func(nc *nats.Conn) error { _, err := nc.QueueSubscribeSync(subject, queue); return err }
}

// refusedAttacks are the attacks the server refuses B outright; cacheKey
// is a key of A's cached answers.
func refusedAttacks(f *fleet, cacheKey string) []refusedAttack {
	api := f.envs["tenant-"+tenantB].NATSAPI + "." // B's JetStream API prefix: JS.chat.API.
	n := f.names
	replies, jobs := n.RepliesStream(), n.JobsStream()
	kv := func(bucket string) string { return "KV_" + bucket }
	return []refusedAttack{
		{"publish a job on A's subject", tryPub(n.Jobs(tenantA))},
		{"publish a high-priority job on A's subject", tryPub(n.PriorityJobs(tenantA, "high"))},
		{"subscribe to the queue announcements", trySub(n.QueuedJobs())},
		{"subscribe to A's replies", trySub(n.Prefix() + ".reply." + tenantA + ".>")},
		{"subscribe to every reply", trySub(n.AllReplies())},
		{"subscribe to everything", trySub(">")},
		{"subscribe to A's stored reply events", trySub(n.Prefix() + ".write." + tenantA + ".>")},
		{"forge an event of A's reply", tryPub(n.ReplyWrite(tenantA, "a-victim"))},
		{"direct get of A's stored reply", tryRequest(api + "DIRECT.GET." + replies + "." + n.ReplyWrite(tenantA, "a-1"))},
		{"direct get of A's stored reply, default API prefix", tryRequest("$JS.API.DIRECT.GET." + replies + "." + n.ReplyWrite(tenantA, "a-1"))},
		{"direct get by sequence (any subject)", tryRequest(api + "DIRECT.GET." + replies)},
		{"attach: consumer with A's filter", tryRequest(api + "CONSUMER.CREATE." + replies + ".x." + n.ReplyWrite(tenantA, "a-1"))},
		{"consumer without a filter", tryRequest(api + "CONSUMER.CREATE." + replies + ".x")},
		{"list the replies stream's consumers", tryRequest(api + "CONSUMER.LIST." + replies)},
		{"consumer names of the replies stream", tryRequest(api + "CONSUMER.NAMES." + replies)},
		{"delete A's queue consumer", tryRequest(api + "CONSUMER.DELETE." + jobs + "." + n.QueueConsumer(tenantA, "normal"))},
		{"read A's cache entry (direct get)", tryRequest(api + "DIRECT.GET." + kv(n.CacheBucket()) + ".$KV." + n.CacheBucket() + "." + cacheKey)},
		{"read A's cache entries (consumer)", tryRequest(api + "CONSUMER.CREATE." + kv(n.CacheBucket()) + ".x.$KV." + n.CacheBucket() + "." + tenantA + ".>")},
		{"read the cache bucket (stream info)", tryRequest(api + "STREAM.INFO." + kv(n.CacheBucket()))},
		{"subscribe to cache writes", trySub("$KV." + n.CacheBucket() + ".>")},
		{"poison A's cache entry", tryPub("$KV." + n.CacheBucket() + "." + cacheKey)},
		{"read A's cancel entry (direct get)", tryRequest(api + "DIRECT.GET." + kv(n.CancelBucket()) + "." + n.CancelSubject(tenantA, "a-cancel"))},
		{"read A's cancel entries (consumer)", tryRequest(api + "CONSUMER.CREATE." + kv(n.CancelBucket()) + ".x.$KV." + n.CancelBucket() + "." + tenantA + ".>")},
		{"cancel A's request", tryPub(n.CancelSubject(tenantA, "a-victim"))},
		{"read the leases (direct get)", tryRequest(api + "DIRECT.GET." + kv(n.InflightBucket()) + ".$KV." + n.InflightBucket() + "._maintenance")},
		{"take the maintenance lease", tryPub("$KV." + n.InflightBucket() + "._maintenance")},
		{"write B's own quota in the tenants bucket", tryPub("$KV." + n.TenantsBucket() + "." + tenantB)},
		{"read the tenants bucket", tryRequest(api + "DIRECT.GET." + kv(n.TenantsBucket()) + ".$KV." + n.TenantsBucket() + "." + tenantA)},
		{"forge a max-deliveries advisory", tryPub("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + jobs + "." + n.QueueConsumer(tenantA, "normal"))},
		{"create a stream", tryRequest(api + "STREAM.CREATE.EVIL")},
		{"delete the jobs stream", tryRequest(api + "STREAM.DELETE." + jobs)},
		{"update the replies stream", tryRequest(api + "STREAM.UPDATE." + replies)},
		{"purge the jobs stream", tryRequest(api + "STREAM.PURGE." + jobs)},
		{"delete the jobs stream, default API prefix", tryRequest("$JS.API.STREAM.DELETE." + jobs)},
		{"pull A's jobs from its queue consumer", tryRequest(api + "CONSUMER.MSG.NEXT." + jobs + "." + n.QueueConsumer(tenantA, "normal"))},
		{"create a queue consumer of A's jobs", tryRequest(api + "CONSUMER.CREATE." + jobs + "." + n.QueueConsumer(tenantA, "high") + "." + n.PriorityJobs(tenantA, "high"))},
		{"a worker's control subject", tryPub(n.Control("w1"))},
		{"a worker's status", tryRequest(n.Prefix() + ".status.w1")},
		{"the workers' services", tryRequest("$SRV.PING")},
		{"call a fleet tool", tryRequest(n.Tool("calculator"))},
		{"stream output into a tool call", tryPub(n.ToolOutput("x"))},
		{"read the tools' output", trySub(n.AllToolOutputs())},
		{"serve a tool", tryQueueSub(n.Tool("calculator"), tools.ServiceName)},
		{"ask the tool servers what they serve", tryRequest("$SRV.INFO." + tools.ServiceName)},
		{"ask A's preparation service", tryRequest(n.Prepare(tenantA))},
		{"serve A's preparation", tryQueueSub(n.Prepare(tenantA), tools.PrepareServiceName)},
	}
}

// filterMismatch: B may create consumers only with the subject filtered
// to its own replies; the server compares the filter B asks for with it.
func filterMismatch(t *testing.T, f *fleet, got *answers) {
	ctx := fleettest.Context(t, 20*time.Second)
	n := f.names
	api := f.envs["tenant-"+tenantB].NATSAPI + "."
	own := n.ReplyWrite(tenantB, "x")
	nc := f.connect(t, "tenant-"+tenantB)
	for _, cfg := range []map[string]any{
		{"name": "evil", "filter_subject": n.ReplyWrite(tenantA, "a-1")},
		{"name": "evil", "filter_subjects": []string{n.ReplyWrite(tenantA, "a-1")}},
		{"name": "evil"},
	} {
		body, _ := json.Marshal(map[string]any{"stream_name": n.RepliesStream(), "config": cfg})
		msg, err := nc.RequestWithContext(ctx, api+"CONSUMER.CREATE."+n.RepliesStream()+".evil."+own, body)
		if err != nil {
			t.Fatal(err)
		}
		var resp struct {
			Error *jetstream.APIError `json:"error"`
		}
		if err := json.Unmarshal(msg.Data, &resp); err != nil || resp.Error == nil {
			t.Fatalf("consumer %v: %s, want an error", cfg, msg.Data)
		}
		got.add("consumer create on B's subject with config %v: %v", cfg, resp.Error)
	}
}

// publisherAsA: B's publisher naming tenant A gets no answer to any
// request: the server refuses each.
func publisherAsA(t *testing.T, f *fleet) {
	short := func() context.Context {
		c, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
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
