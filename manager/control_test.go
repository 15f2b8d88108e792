package manager

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"

	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/protocol"
)

// controlBundle is a manager answering control messages on its control
// subject, without Start (so no hub runs unless a test builds one), and a
// follower worker's connection to the same server.
type controlBundle struct {
	m        *Manager
	follower *nats.Conn
	subject  string // the manager's control subject
}

func controlSetup(t *testing.T) *controlBundle {
	t.Helper()
	m := newTestManager(t)
	sub, err := m.nc.Subscribe(m.cfg.Names.Control(m.cfg.WorkerID), m.handleControl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := m.nc.Flush(); err != nil { // subscribed on the server before anyone asks
		t.Fatal(err)
	}
	return &controlBundle{m: m, follower: natstest.Connect(t, m.nc.ConnectedUrl()), subject: m.cfg.Names.Control(m.cfg.WorkerID)}
}

// leadingHub builds a hub of m leading generation genID (what hubTable.start
// and hub.run would leave behind, without the goroutine), with local
// requests subscribed and history in its log, registered in the hub table.
// It returns the hub and its generation number.
func leadingHub(t *testing.T, m *Manager, genID string, local int, history ...entry) (*hub, int) {
	t.Helper()
	ctx, cancel := context.WithCancelCause(m.life)
	t.Cleanup(func() { cancel(nil) })
	key := "t.key-" + genID
	h := &hub{
		m: m, id: protocol.NewID(), dedupeKey: key, hubKey: key,
		job: &protocol.Job{ID: "r-" + genID, Tenant: "t", Model: "m"}, creator: "t.r-" + genID, useCache: true,
		ctx: ctx, cancel: cancel, done: make(chan struct{}),
		log: newHubLog(), routed: make(chan struct{}), endCh: make(chan struct{}), remote: map[string]struct{}{},
		local: local,
	}
	gen, ok := h.newGeneration(modeLeader, genID, trace.SpanContext{})
	if !ok {
		t.Fatal("new hub already ended")
	}
	for _, e := range history {
		h.appendEntry(gen, e)
	}
	m.hubs.mu.Lock()
	m.hubs.byKey[key] = h
	m.hubs.mu.Unlock()
	t.Cleanup(m.hubs.lead(genID, h))
	return h, gen
}

// send asks the manager with c on the follower's connection; a reply
// arrives after every message the manager published before it.
func (b *controlBundle) send(t *testing.T, c controlMsg) controlReply {
	t.Helper()
	data, _ := json.Marshal(c)
	msg, err := b.follower.Request(b.subject, data, time.Minute) // a hang guard
	if err != nil {
		t.Fatal(err)
	}
	var r controlReply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		t.Fatalf("reply %s: %v", msg.Data, err)
	}
	return r
}

// barrier returns once the manager has handled every control message the
// follower sent before it: one subscription handles them in order.
func (b *controlBundle) barrier(t *testing.T) {
	t.Helper()
	if r := b.send(t, controlMsg{Op: "join", Gen: "barrier", Hub: "barrier"}); r.OK {
		t.Fatal("the barrier joined a generation")
	}
}

func (b *controlBundle) leave(t *testing.T, gen, follower string) {
	t.Helper()
	data, _ := json.Marshal(controlMsg{Op: "leave", Gen: gen, Worker: "w2", Hub: follower})
	if err := b.follower.Publish(b.subject, data); err != nil {
		t.Fatal(err)
	}
}

// genSub subscribes the follower's connection to a generation subject.
func (b *controlBundle) genSub(t *testing.T, genID string) *nats.Subscription {
	t.Helper()
	sub, err := b.follower.SubscribeSync(b.m.cfg.Names.Gen("t", genID))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := b.follower.Flush(); err != nil {
		t.Fatal(err)
	}
	return sub
}

func pending(t *testing.T, sub *nats.Subscription) int {
	t.Helper()
	n, _, err := sub.Pending()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func nextEvent(t *testing.T, sub *nats.Subscription) protocol.Event {
	t.Helper()
	msg, err := sub.NextMsg(time.Minute) // a hang guard
	if err != nil {
		t.Fatal(err)
	}
	ev, err := protocol.DecodeEvent(msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func remotes(h *hub) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.remote)
}

// TestControlJoinRefused: a join for a generation this worker does not
// lead now answers ok:false and registers nobody.
func TestControlJoinRefused(t *testing.T) {
	t.Parallel()
	b := controlSetup(t)
	ended, gen := leadingHub(t, b.m, "g-ended", 1)
	ended.appendEntry(gen, entry{kind: entryEnd, end: &ending{typ: protocol.EventDone}})
	unwanted, _ := leadingHub(t, b.m, "g-unwanted", 0)
	unwanted.mu.Lock()
	unwanted.unwanted = true
	unwanted.mu.Unlock()
	movedOn, _ := leadingHub(t, b.m, "g-earlier", 1)
	movedOn.newGeneration(modeLeader, "g-later", trace.SpanContext{}) // still listed under g-earlier
	following, _ := leadingHub(t, b.m, "g-following", 1)
	following.newGeneration(modeFollower, "g-following", trace.SpanContext{})

	for _, gen := range []string{"g-unknown", "g-ended", "g-unwanted", "g-earlier", "g-following"} {
		if r := b.send(t, controlMsg{Op: "join", Gen: gen, Worker: "w2", Hub: "f1"}); r.OK {
			t.Errorf("join of %s: ok", gen)
		}
	}
	for _, h := range []*hub{ended, unwanted, movedOn, following} {
		if n := remotes(h); n != 0 {
			t.Errorf("hub of %s: %d remote followers after refused joins", h.job.ID, n)
		}
	}
	// The manager's own join says the same.
	err := b.m.join(t.Context(), leaseValue{Gen: "g-unknown", Worker: b.m.cfg.WorkerID}, "f1")
	if !errors.Is(err, errGenGone) {
		t.Errorf("Manager.join of an unknown generation: %v, want errGenGone", err)
	}
}

// TestControlJoinMirrors: a join for the generation this worker leads
// answers ok:true and mirrors the current output's history to the
// generation subject, in order and numbered from 1; a second join by the
// same follower, or a join by another, mirrors nothing more; entries
// appended afterwards are mirrored as they come.
func TestControlJoinMirrors(t *testing.T) {
	t.Parallel()
	b := controlSetup(t)
	h, gen := leadingHub(t, b.m, "g1", 1,
		chunkEntry("before the restart"), entry{kind: entryReset},
		chunkEntry("hello"), entry{kind: entryProgress, stage: protocol.StageGenerating}, chunkEntry(" world"))
	sub := b.genSub(t, "g1")

	if r := b.send(t, controlMsg{Op: "join", Gen: "g1", Worker: "w2", Hub: "f1"}); !r.OK {
		t.Fatal("join of the leading generation refused")
	}
	if n := pending(t, sub); n != 3 {
		t.Fatalf("%d history events mirrored before the reply, want 3", n)
	}
	for i, want := range []entry{chunkEntry("hello"), {kind: entryProgress, stage: protocol.StageGenerating}, chunkEntry(" world")} {
		ev := nextEvent(t, sub)
		if got := entryFromEvent(&ev); ev.ID != "g1" || ev.Seq != uint64(i+1) || got.kind != want.kind || got.content != want.content || got.stage != want.stage {
			t.Errorf("mirrored event %d: %+v, want entry %+v", i+1, ev, want)
		}
	}

	if r := b.send(t, controlMsg{Op: "join", Gen: "g1", Worker: "w2", Hub: "f1"}); !r.OK {
		t.Error("second join by the same follower refused")
	}
	if r := b.send(t, controlMsg{Op: "join", Gen: "g1", Worker: "w3", Hub: "f2"}); !r.OK {
		t.Error("join by another follower refused")
	}
	if n := pending(t, sub); n != 0 {
		t.Errorf("later joins mirrored the history again: %d events", n)
	}
	if n := remotes(h); n != 2 {
		t.Errorf("%d remote followers, want 2 (f1 once, f2)", n)
	}

	h.appendEntry(gen, chunkEntry("!"))
	if ev := nextEvent(t, sub); ev.Seq != 4 || ev.Type != protocol.EventChunk || ev.Content != "!" {
		t.Errorf("live event mirrored as %+v, want chunk 4 %q", ev, "!")
	}
	// The manager's own join (a hub on this worker that cannot share in
	// memory) takes the same path.
	if err := b.m.join(t.Context(), leaseValue{Gen: "g1", Worker: b.m.cfg.WorkerID}, "f3"); err != nil {
		t.Errorf("Manager.join of the leading generation: %v", err)
	}
	if n := remotes(h); n != 3 {
		t.Errorf("%d remote followers after Manager.join, want 3", n)
	}
}

// TestControlLeave: leave forgets the follower; when the last follower of
// a hub no local request reads leaves, the hub is unwanted: cancelled,
// unjoinable and gone from the hub table. A hub local requests read
// stays. Leaves for another generation change nothing.
func TestControlLeave(t *testing.T) {
	t.Parallel()
	b := controlSetup(t)
	remoteOnly, _ := leadingHub(t, b.m, "g-remote", 0)
	withLocal, _ := leadingHub(t, b.m, "g-local", 1)
	for _, j := range []controlMsg{{Gen: "g-remote", Hub: "f1"}, {Gen: "g-remote", Hub: "f2"}, {Gen: "g-local", Hub: "f1"}} {
		j.Op, j.Worker = "join", "w2"
		if r := b.send(t, j); !r.OK {
			t.Fatalf("join %+v refused", j)
		}
	}

	b.leave(t, "g-unknown", "f1")
	b.leave(t, "g-local", "f2") // not a follower of g-local
	b.leave(t, "g-remote", "f1")
	b.barrier(t)
	if n := remotes(remoteOnly); n != 1 || remoteOnly.ctx.Err() != nil {
		t.Fatalf("after f1 left: %d remote followers (want 1), cancelled %v", n, remoteOnly.ctx.Err())
	}
	if n := remotes(withLocal); n != 1 {
		t.Fatalf("leaves of other followers or generations removed g-local's: %d left", n)
	}

	b.m.leave(leaseValue{Gen: "g-remote", Worker: b.m.cfg.WorkerID}, "f2")
	b.leave(t, "g-local", "f1")
	b.barrier(t)
	if n := remotes(remoteOnly); n != 0 || !errors.Is(context.Cause(remoteOnly.ctx), errNoInterest) {
		t.Errorf("after the last follower left: %d remote followers, cause %v; want 0, %v", n, context.Cause(remoteOnly.ctx), errNoInterest)
	}
	b.m.hubs.mu.Lock()
	listed := b.m.hubs.byKey[remoteOnly.hubKey] == remoteOnly
	b.m.hubs.mu.Unlock()
	if listed {
		t.Error("an unwanted hub is still joinable in the hub table")
	}
	if r := b.send(t, controlMsg{Op: "join", Gen: "g-remote", Worker: "w2", Hub: "f1"}); r.OK {
		t.Error("join of an unwanted hub's generation: ok")
	}
	if n := remotes(withLocal); n != 0 || withLocal.ctx.Err() != nil {
		t.Errorf("a hub a local request reads: %d remote followers, cancelled %v; want 0, not cancelled", n, withLocal.ctx.Err())
	}
}

// TestControlLeaveEarlierGeneration: a leave for a generation the hub led
// before its current one does not forget a follower of the current one.
func TestControlLeaveEarlierGeneration(t *testing.T) {
	t.Parallel()
	b := controlSetup(t)
	h, _ := leadingHub(t, b.m, "g1", 0)
	if r := b.send(t, controlMsg{Op: "join", Gen: "g1", Hub: "f1"}); !r.OK {
		t.Fatal("join g1 refused")
	}
	h.newGeneration(modeLeader, "g2", trace.SpanContext{}) // forgets g1's followers
	t.Cleanup(b.m.hubs.lead("g2", h))                      // g1 stays listed, as until its lead ends
	if r := b.send(t, controlMsg{Op: "join", Gen: "g2", Hub: "f1"}); !r.OK {
		t.Fatal("join g2 refused")
	}
	b.leave(t, "g1", "f1")
	b.barrier(t)
	if n := remotes(h); n != 1 || h.ctx.Err() != nil {
		t.Errorf("a leave of g1 changed g2: %d remote followers, cancelled %v", n, h.ctx.Err())
	}
}

// TestControlIgnoresMalformed: messages that are not JSON, name no
// follower hub or no known operation get no reply and change nothing.
func TestControlIgnoresMalformed(t *testing.T) {
	t.Parallel()
	b := controlSetup(t)
	h, _ := leadingHub(t, b.m, "g1", 0, chunkEntry("hello"))
	gens := b.genSub(t, "g1")
	inbox := nats.NewInbox()
	replies, err := b.follower.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = replies.Unsubscribe() }()

	for _, raw := range []string{
		`{not json`, ``, `null`, `[]`, `"join"`,
		`{"op":"join","gen":"g1"}`,
		`{"op":"join","gen":"g1","hub":""}`,
		`{"op":"join","gen":1,"hub":"f1"}`,
		`{"op":"dance","gen":"g1","hub":"f1"}`,
		`{"op":"leave","gen":"g1"}`,
	} {
		if err := b.follower.PublishRequest(b.subject, inbox, []byte(raw)); err != nil {
			t.Fatal(err)
		}
	}
	b.barrier(t)
	if n := pending(t, replies); n != 0 {
		t.Errorf("%d replies to malformed control messages", n)
	}
	if n := pending(t, gens); n != 0 {
		t.Errorf("malformed control messages mirrored %d events", n)
	}
	if n := remotes(h); n != 0 || h.ctx.Err() != nil {
		t.Errorf("malformed control messages: %d remote followers, cancelled %v", n, h.ctx.Err())
	}
}
