package manager

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel/trace"

	"github.com/chatfleet/chatfleet/protocol"
)

// mode is how a hub is being answered: the source of its current
// generation.
type mode uint8

const (
	modeRouting  mode = iota // deciding: cache, lead or follow
	modeCache                // served from the answer cache
	modeLeader               // this worker calls the upstream
	modeFollower             // another worker leads; we read its events
)

// hub is where the requests on this worker that want the same answer meet
// (one hub key). Its goroutine (run) decides how to answer — from the
// cache, by leading a generation, or by following another worker's — and
// appends the answer to its log; each subscribed request relays the log
// onto its own reply subject. A hub lives through one or more generations
// (a follower that takes over starts a new one); the hub table (hubs.go)
// owns its membership.
type hub struct {
	m         *Manager
	id        string // this hub's own ID: how a leader tells its followers apart
	dedupeKey string // cache and in-flight key (tenant.hash); "" when neither is used
	hubKey    string // key in the hub table; "" for a private hub (dedupe off: never shared, no lease)
	job       *protocol.Job
	creator   string // the request that started it: the leader, if it leads
	// creatorPermit is the creator's slot, parked while the generation it
	// leads waits for the upstream (see Slots).
	creatorPermit *Permit
	useCache      bool
	traceCtx      context.Context // the creator's job span: parent of the upstream span
	// prepared is the job as the preparation service made it, for the
	// generation led now (prepare.go); run's goroutine alone uses it.
	prepared *protocol.Job

	ctx    context.Context // cancelled when no request is interested, or on shutdown
	cancel context.CancelCauseFunc
	done   chan struct{} // closed when run returns

	// pubMu orders mirrored events: held while appending and publishing,
	// so a join's history and later live events reach the generation
	// subject in log order. Taken before mu.
	pubMu sync.Mutex

	mu        sync.Mutex
	log       hubLog
	routed    chan struct{} // closed once the first mode is known
	firstMode mode
	mode      mode
	genID     string              // ID of the current generation
	leader    trace.SpanContext   // the leading job's span, for followers' links
	gen       int                 // counts generations; entries of an earlier one are dropped
	chunks    int                 // chunk entries of the current generation
	local     int                 // subscribed local requests
	remote    map[string]struct{} // follower hubs on other workers reading the current generation
	mirror    bool                // mirroring the current generation to its subject
	mirrored  uint64              // events of the current generation mirrored so far
	ended     bool
	endCh     chan struct{} // closed when ended becomes true
	unwanted  bool          // nobody interested: no longer joinable
}

// subscription is one request's place in a hub's log.
type subscription struct {
	hub  *hub
	next int
}

// subscribe adds a local request; nil when the hub can no longer be
// joined. New subscribers start at the current generation.
func (h *hub) subscribe() *subscription {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ended || h.unwanted {
		return nil
	}
	h.local++
	return &subscription{hub: h, next: h.log.base}
}

// leaderSpanContext is the span of the job leading the current generation.
func (h *hub) leaderSpanContext() trace.SpanContext {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.leader
}

// since returns the entries from i on and a channel closed by the next
// append.
func (h *hub) since(i int) ([]entry, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.log.since(i)
}

// role is what a request is told in its meta event.
func (h *hub) role(requestKey string) protocol.Role {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.firstMode == modeCache:
		return protocol.RoleCache
	case h.firstMode == modeLeader && requestKey == h.creator:
		return protocol.RoleLeader
	default:
		return protocol.RoleFollower
	}
}

// newGeneration starts answering in mode under genID: a generation this
// worker leads, one it follows, or the cached answer. Output of an earlier
// generation is reset, and its remote followers are forgotten: they follow
// a generation ID, and this is a new one. It returns the generation's
// number, or false once the hub has ended.
func (h *hub) newGeneration(md mode, genID string, leader trace.SpanContext) (int, bool) {
	h.pubMu.Lock()
	defer h.pubMu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ended {
		return 0, false
	}
	if h.chunks > 0 {
		h.log.append(entry{kind: entryReset})
	}
	if h.mode == modeRouting {
		h.firstMode = md
		close(h.routed)
	} else if h.mode == modeFollower && md == modeLeader {
		h.m.countTakeover(h.traceCtx)
	}
	h.mode, h.genID, h.leader, h.chunks, h.mirror, h.mirrored = md, genID, leader, 0, false, 0
	clear(h.remote)
	h.gen++
	return h.gen, true
}

// appendEntry adds an entry of generation gen (an earlier generation's
// are dropped, as are entries after the end) and mirrors it when remote
// followers read this generation.
func (h *hub) appendEntry(gen int, e entry) {
	if end := h.appendMirrored(gen, e); end != nil {
		// Nothing is mirrored after the end, so the end is published
		// without holding up joins. It is published with an ack:
		// followers that find the lease gone must find the end stored
		// (see follow).
		h.m.publishGenEvent(end.subject, &end.event, true)
	}
}

// mirroredEnd is an end entry still to be mirrored.
type mirroredEnd struct {
	subject string
	event   protocol.Event
}

// appendMirrored appends e and mirrors it, under pubMu (released even if
// publishing panics, so the hub can still end); an end entry is returned
// to be mirrored after pubMu is released.
func (h *hub) appendMirrored(gen int, e entry) *mirroredEnd {
	h.pubMu.Lock()
	defer h.pubMu.Unlock()
	subject, mirror, ok := h.appendLocked(gen, e)
	switch {
	case !ok:
		return nil
	case e.kind == entryEnd:
		return &mirroredEnd{subject: subject, event: mirror}
	default:
		h.m.publishGenEvent(subject, &mirror, false)
		return nil
	}
}

// appendLocked adds e under mu and returns the event that mirrors it, if
// the generation is mirrored (ok false: nothing to publish).
func (h *hub) appendLocked(gen int, e entry) (subject string, mirror protocol.Event, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ended || gen != h.gen {
		return "", mirror, false
	}
	h.log.append(e)
	switch e.kind {
	case entryChunk, entryTool:
		h.chunks++
	case entryReset:
		h.chunks = 0
	case entryEnd:
		h.ended = true
		close(h.endCh)
	}
	if !h.mirror {
		return "", mirror, false
	}
	h.mirrored++
	return h.m.cfg.Names.Gen(h.job.Tenant, h.genID), e.event(h.genID, h.mirrored), true
}

// markEnded ends the hub without an end entry: on shutdown, when its
// requests are handed back rather than answered.
func (h *hub) markEnded() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.ended {
		h.ended = true
		close(h.endCh)
	}
}

// isEnded reports whether the hub has ended.
func (h *hub) isEnded() bool {
	select {
	case <-h.endCh:
		return true
	default:
		return false
	}
}
