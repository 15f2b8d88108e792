package manager

import (
	"context"
	"sync"

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
	m        *Manager
	key      string // in-flight and cache key (tenant.hash); "" when dedupe is off
	hubKey   string // key in Manager.hubs; "" when dedupe is off
	job      *protocol.Job
	creator  string // the request that started it: the leader, if it leads
	useCache bool

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
	genID     string         // generation ID of the current attempt
	attempt   int            // bumped by every new attempt; stale follower events are dropped
	chunks    int            // chunk entries in the current attempt
	local     int            // subscribed local requests
	remote    map[string]int // remote workers following this leader, with their hub count
	mirror    bool           // mirroring the current attempt to its generation subject
	mirrored  uint64         // events of the current attempt mirrored so far
	ended     bool
	endCh     chan struct{} // closed when ended becomes true
	abandoned bool          // nobody interested: no longer joinable
}

// subscription is one request's place in a generation's log.
type subscription struct {
	g    *generation
	next int
}

// attach finds the generation for r or starts one, and subscribes r.
func (m *Manager) attach(r *request) (*subscription, error) {
	useCache := r.job.CacheOr(!m.cfg.DisableCache)
	if !r.job.DedupeOr(!m.cfg.DisableDedupe) {
		g := m.newGeneration(r, "", "", useCache)
		return g.subscribe(), nil
	}
	hash, err := Key(r.job)
	if err != nil {
		return nil, err
	}
	key := m.cfg.Names.DedupeKey(r.job.Tenant, hash)
	hubKey := key
	if !useCache {
		hubKey += "/nocache" // never joins a generation served from the cache
	}
	m.hubsMu.Lock()
	defer m.hubsMu.Unlock()
	if g := m.hubs[hubKey]; g != nil {
		if s := g.subscribe(); s != nil {
			return s, nil
		}
	}
	g := m.newGeneration(r, key, hubKey, useCache)
	m.hubs[hubKey] = g
	return g.subscribe(), nil
}

// newGeneration creates a generation and starts its goroutine, which the
// manager owns (Stop waits for it).
func (m *Manager) newGeneration(r *request, key, hubKey string, useCache bool) *generation {
	ctx, cancel := context.WithCancelCause(m.life)
	g := &generation{
		m: m, key: key, hubKey: hubKey, job: r.job, creator: r.key, useCache: useCache,
		ctx: ctx, cancel: cancel, done: make(chan struct{}),
		log: newGenLog(), routed: make(chan struct{}), endCh: make(chan struct{}), remote: map[string]int{},
	}
	m.goBackground(g.run)
	return g
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
// generation or the one it follows. Output of an earlier attempt is reset.
func (g *generation) newAttempt(md mode, genID string) {
	g.pubMu.Lock()
	defer g.pubMu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.chunks > 0 {
		g.log.append(entry{kind: entryReset})
	}
	if g.mode == modeRouting {
		g.firstMode = md
		close(g.routed)
	} else if g.mode == modeFollow && md == modeLead {
		g.m.stats.takeovers.Add(1)
	}
	g.mode, g.genID, g.chunks, g.mirror, g.mirrored = md, genID, 0, false, 0
	g.attempt++
}

// appendEntry adds an entry of the current attempt (or of attempt, for a
// follower's events; stale attempts are dropped) and mirrors it when remote
// followers read this generation. It reports whether it appended.
func (g *generation) appendEntry(attempt int, e entry) bool {
	g.pubMu.Lock()
	defer g.pubMu.Unlock()
	g.mu.Lock()
	if g.ended || (attempt != 0 && attempt != g.attempt) {
		g.mu.Unlock()
		return false
	}
	g.log.append(e)
	switch e.kind {
	case entryChunk:
		g.chunks++
	case entryEnd:
		g.ended = true
		close(g.endCh)
	}
	var mirror *protocol.Event
	if g.mirror {
		g.mirrored++
		ev := e.event(g.genID, g.mirrored)
		mirror = &ev
	}
	subject := g.m.cfg.Names.Gen(g.job.Tenant, g.genID)
	g.mu.Unlock()
	if mirror != nil {
		// The end is published with an ack: followers that find the lease
		// gone must find the end stored (see follow).
		g.m.publishGenEvent(subject, mirror, e.kind == entryEnd)
	}
	return true
}

// startMirroring publishes the current attempt's history to its generation
// subject and keeps mirroring from then on. Called when a remote follower
// joins; false if the generation is over or not leading.
func (g *generation) startMirroring(worker string) bool {
	g.pubMu.Lock()
	defer g.pubMu.Unlock()
	g.mu.Lock()
	if g.ended || g.abandoned || g.mode != modeLead {
		g.mu.Unlock()
		return false
	}
	g.remote[worker]++
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

// removeRemote drops one of worker's follower hubs. Callers hold hubsMu.
func (g *generation) removeRemote(worker string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.remote[worker] <= 1 {
		delete(g.remote, worker)
	} else {
		g.remote[worker]--
	}
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

// currentAttempt returns the attempt number.
func (g *generation) currentAttempt() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.attempt
}
