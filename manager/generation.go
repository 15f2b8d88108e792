package manager

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel/trace"

	"github.com/chatfleet/chatfleet/protocol"
)

// mode is how a generation is being answered.
type mode uint8

const (
	modeRouting mode = iota // deciding: cache, lead or follow
	modeCache               // served from the answer cache
	modeLead                // this worker calls the upstream
	modeFollow              // another worker leads; we read its events
)

// generation is one answer in the making on this worker, shared by every
// local request with the same hub key. Its goroutine (run) decides how to
// answer, and appends the answer to the log; each subscribed request relays
// the log onto its own reply subject.
type generation struct {
	m       *Manager
	id      string // this hub's own ID: how a leader tells its followers apart
	key     string // cache and in-flight key (tenant.hash); "" when neither is used
	hubKey  string // key in Manager.hubs; "" for a private generation (dedupe off: never shared, no lease)
	job     *protocol.Job
	creator string // the request that started it: the leader, if it leads
	// creatorPermit is the creator's slot, parked while the generation it
	// leads waits for the upstream (see Slots).
	creatorPermit *Permit
	useCache      bool
	traceCtx      context.Context // the creator's job span: parent of the upstream span

	ctx    context.Context // cancelled when no request is interested, or on shutdown
	cancel context.CancelCauseFunc
	done   chan struct{} // closed when run returns

	// pubMu orders mirrored events: held while appending and publishing,
	// so a join's history and later live events reach the generation
	// subject in log order. Taken before mu.
	pubMu sync.Mutex

	mu        sync.Mutex
	log       genLog
	routed    chan struct{} // closed once the first mode is known
	firstMode mode
	mode      mode
	genID     string              // generation ID of the current attempt
	leader    trace.SpanContext   // the leading job's span, for followers' links
	attempt   int                 // bumped by every new attempt; stale follower events are dropped
	chunks    int                 // chunk entries in the current attempt
	local     int                 // subscribed local requests
	remote    map[string]struct{} // follower hubs on other workers reading the current attempt
	mirror    bool                // mirroring the current attempt to its generation subject
	mirrored  uint64              // events of the current attempt mirrored so far
	ended     bool
	endCh     chan struct{} // closed when ended becomes true
	abandoned bool          // nobody interested: no longer joinable
}

// subscription is one request's place in a generation's log.
type subscription struct {
	g    *generation
	next int
}

// attach finds the generation for r or starts one, and subscribes r. It
// returns errShutdown once the manager is stopping.
func (m *Manager) attach(r *request) (*subscription, error) {
	useCache := r.job.CacheOr(!m.cfg.DisableCache)
	dedupe := r.job.DedupeOr(!m.cfg.DisableDedupe)
	key := ""
	if dedupe || useCache {
		hash, err := Key(r.job)
		if err != nil {
			return nil, err
		}
		key = m.cfg.Names.DedupeKey(r.job.Tenant, hash)
	}
	m.hubsMu.Lock()
	defer m.hubsMu.Unlock()
	if m.stopping {
		return nil, errShutdown
	}
	if !dedupe {
		return m.startGeneration(r, key, "", useCache), nil
	}
	hubKey := key
	if !useCache {
		hubKey += "/nocache" // never joins a generation served from the cache
	}
	if g := m.hubs[hubKey]; g != nil {
		if s := g.subscribe(); s != nil {
			return s, nil
		}
	}
	s := m.startGeneration(r, key, hubKey, useCache)
	m.hubs[hubKey] = s.g
	return s, nil
}

// startGeneration creates a generation with r subscribed and starts its
// goroutine, which the manager owns (Stop waits for it). Callers hold
// hubsMu and have checked the manager is not stopping.
func (m *Manager) startGeneration(r *request, key, hubKey string, useCache bool) *subscription {
	ctx, cancel := context.WithCancelCause(m.life)
	g := &generation{
		m: m, id: protocol.NewID(), key: key, hubKey: hubKey,
		job: r.job, creator: r.key, creatorPermit: r.permit, useCache: useCache, traceCtx: r.traceCtx,
		ctx: ctx, cancel: cancel, done: make(chan struct{}),
		log: newGenLog(), routed: make(chan struct{}), endCh: make(chan struct{}), remote: map[string]struct{}{},
		local: 1, // r, subscribed before run can end the generation
	}
	m.background.Add(1)
	m.routines.Go(func() {
		defer m.background.Done()
		g.run()
	})
	return &subscription{g: g}
}

// subscribe adds a local request; nil when the generation can no longer be
// joined. New subscribers start at the current attempt.
func (g *generation) subscribe() *subscription {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ended || g.abandoned {
		return nil
	}
	g.local++
	return &subscription{g: g, next: g.log.base}
}

// leave removes a local request. The last one out cancels the generation,
// unless remote followers still read it.
func (s *subscription) leave() {
	g := s.g
	g.m.hubsMu.Lock()
	defer g.m.hubsMu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.local--
	g.abandonIfUnwanted()
}

// abandonIfUnwanted cancels a generation nobody reads any more. Callers
// hold hubsMu and mu.
func (g *generation) abandonIfUnwanted() {
	if g.local > 0 || len(g.remote) > 0 || g.ended || g.abandoned {
		return
	}
	g.abandoned = true
	if g.hubKey != "" && g.m.hubs[g.hubKey] == g {
		delete(g.m.hubs, g.hubKey)
	}
	g.cancel(errNoInterest)
}

// leaderSpanContext is the span of the job leading the current attempt.
func (g *generation) leaderSpanContext() trace.SpanContext {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.leader
}

// since returns the entries from i on and a channel closed by the next
// append.
func (g *generation) since(i int) ([]entry, <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.log.since(i)
}

// role is what a request is told in its meta event.
func (g *generation) role(requestKey string) protocol.Role {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.firstMode == modeCache:
		return protocol.RoleCache
	case g.firstMode == modeLead && requestKey == g.creator:
		return protocol.RoleLeader
	default:
		return protocol.RoleFollower
	}
}

// newAttempt starts answering in mode under genID: a leader's own
// generation or the one it follows. Output of an earlier attempt is reset,
// and its remote followers are forgotten: they follow a generation ID, and
// this is a new one. It returns the attempt number, or false once the
// generation has ended.
func (g *generation) newAttempt(md mode, genID string, leader trace.SpanContext) (int, bool) {
	g.pubMu.Lock()
	defer g.pubMu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ended {
		return 0, false
	}
	if g.chunks > 0 {
		g.log.append(entry{kind: entryReset})
	}
	if g.mode == modeRouting {
		g.firstMode = md
		close(g.routed)
	} else if g.mode == modeFollow && md == modeLead {
		g.m.stats.takeovers.Add(1)
		g.m.metrics.takeovers.Add(g.traceCtx, 1)
	}
	g.mode, g.genID, g.leader, g.chunks, g.mirror, g.mirrored = md, genID, leader, 0, false, 0
	clear(g.remote)
	g.attempt++
	return g.attempt, true
}

// appendEntry adds an entry of attempt (stale attempts are dropped, as are
// entries after the end) and mirrors it when remote followers read this
// generation.
func (g *generation) appendEntry(attempt int, e entry) {
	g.pubMu.Lock()
	g.mu.Lock()
	if g.ended || attempt != g.attempt {
		g.mu.Unlock()
		g.pubMu.Unlock()
		return
	}
	g.log.append(e)
	switch e.kind {
	case entryChunk:
		g.chunks++
	case entryReset:
		g.chunks = 0
	case entryEnd:
		g.ended = true
		close(g.endCh)
	}
	if !g.mirror {
		g.mu.Unlock()
		g.pubMu.Unlock()
		return
	}
	g.mirrored++
	mirror := e.event(g.genID, g.mirrored)
	subject := g.m.cfg.Names.Gen(g.job.Tenant, g.genID)
	g.mu.Unlock()
	if e.kind != entryEnd {
		g.m.publishGenEvent(subject, &mirror, false)
		g.pubMu.Unlock()
		return
	}
	// Nothing is mirrored after the end, so the end can be published
	// without holding up joins. It is published with an ack: followers
	// that find the lease gone must find the end stored (see follow).
	g.pubMu.Unlock()
	g.m.publishGenEvent(subject, &mirror, true)
}

// startMirroring registers follower (a hub on another worker) as reading
// genID, publishes the attempt's history to its generation subject and
// keeps mirroring from then on. It is idempotent per follower, and false
// when genID is not the attempt this worker leads now.
func (g *generation) startMirroring(genID, follower string) bool {
	if !g.leads(genID) {
		return false // quick refusal without waiting for pubMu
	}
	g.pubMu.Lock()
	defer g.pubMu.Unlock()
	g.mu.Lock()
	if !g.leadsLocked(genID) {
		g.mu.Unlock()
		return false
	}
	g.remote[follower] = struct{}{}
	if g.mirror {
		g.mu.Unlock()
		return true
	}
	g.mirror = true
	history := g.log.entries[g.log.base:]
	events := make([]protocol.Event, 0, len(history))
	for _, e := range history {
		if e.kind == entryReset {
			continue
		}
		g.mirrored++
		events = append(events, e.event(g.genID, g.mirrored))
	}
	subject := g.m.cfg.Names.Gen(g.job.Tenant, g.genID)
	g.mu.Unlock()
	for i := range events {
		g.m.publishGenEvent(subject, &events[i], false)
	}
	return true
}

func (g *generation) leads(genID string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.leadsLocked(genID)
}

func (g *generation) leadsLocked(genID string) bool {
	return !g.ended && !g.abandoned && g.mode == modeLead && g.genID == genID
}

// removeRemote forgets a follower hub of genID. Callers hold hubsMu.
func (g *generation) removeRemote(genID, follower string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.genID != genID {
		return // it followed an earlier attempt, already forgotten
	}
	delete(g.remote, follower)
	g.abandonIfUnwanted()
}

// markEnded ends the generation without an end entry: on shutdown, when
// its requests are handed back rather than answered.
func (g *generation) markEnded() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.ended {
		g.ended = true
		close(g.endCh)
	}
}

// isEnded reports whether the generation has ended.
func (g *generation) isEnded() bool {
	select {
	case <-g.endCh:
		return true
	default:
		return false
	}
}
