package manager

import (
	"context"
	"sync"

	"github.com/chatfleet/chatfleet/protocol"
)

// hubTable owns this worker's hubs: the joinable ones by hub key, and the
// ones leading a generation by its ID (how a follower's join finds its
// leader). Every way a hub enters or leaves the table is a method here.
//
// Lock order, everywhere in this package: hubTable.mu, then hub.pubMu,
// then hub.mu. Nothing takes hubTable.mu while it holds a hub's lock.
type hubTable struct {
	m        *Manager
	mu       sync.Mutex
	byKey    map[string]*hub // routing or serving, by hub key
	leading  map[string]*hub // leading a generation, by generation ID
	stopping bool            // set by stop: no new hubs
}

func newHubTable(m *Manager) *hubTable {
	return &hubTable{m: m, byKey: map[string]*hub{}, leading: map[string]*hub{}}
}

// join subscribes r to the hub for its answer, starting one if there is
// none (or none that can still be joined). It returns errShutdown once the
// table is stopping.
func (t *hubTable) join(r *request) (*subscription, error) {
	m := t.m
	useCache := r.job.CacheOr(!m.cfg.DisableCache)
	dedupe := r.job.DedupeOr(!m.cfg.DisableDedupe)
	dedupeKey := ""
	if dedupe || useCache {
		hash, err := Key(r.job)
		if err != nil {
			return nil, err
		}
		dedupeKey = m.cfg.Names.DedupeKey(r.job.Tenant, hash)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopping {
		return nil, errShutdown
	}
	if !dedupe {
		return t.start(r, dedupeKey, "", useCache), nil
	}
	hubKey := dedupeKey
	if !useCache {
		hubKey += "/nocache" // never joins a hub served from the cache
	}
	if h := t.byKey[hubKey]; h != nil {
		if s := h.subscribe(); s != nil {
			return s, nil
		}
	}
	s := t.start(r, dedupeKey, hubKey, useCache)
	t.byKey[hubKey] = s.hub
	return s, nil
}

// start creates a hub with r subscribed and starts its goroutine, which
// the manager owns (Stop waits for it). Callers hold mu and have checked
// the table is not stopping.
func (t *hubTable) start(r *request, dedupeKey, hubKey string, useCache bool) *subscription {
	m := t.m
	ctx, cancel := context.WithCancelCause(m.life)
	h := &hub{
		m: m, id: protocol.NewID(), dedupeKey: dedupeKey, hubKey: hubKey,
		job: r.job, creator: r.reqKey, creatorPermit: r.permit, useCache: useCache, traceCtx: r.traceCtx,
		ctx: ctx, cancel: cancel, done: make(chan struct{}),
		log: newHubLog(), routed: make(chan struct{}), endCh: make(chan struct{}), remote: map[string]struct{}{},
		local: 1, // r, subscribed before run can end the hub
	}
	m.background.Add(1)
	if !m.routines.Go(func() {
		defer m.background.Done()
		h.run()
	}) {
		// The pool closed: only after Stop waited for every hub, so never
		// while the table takes hubs; ended at once all the same.
		m.background.Done()
		h.markEnded()
		h.cancel(errShutdown)
		close(h.done)
	}
	return &subscription{hub: h}
}

// leave removes a local request from its hub. The last one out cancels
// the hub, unless remote followers still read it.
func (t *hubTable) leave(s *subscription) {
	h := s.hub
	t.mu.Lock()
	defer t.mu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.local--
	t.dropIfUnwanted(h)
}

// leaveRemote forgets a follower hub on another worker that read genID.
func (t *hubTable) leaveRemote(genID, follower string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.leading[genID]
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.genID != genID {
		return // it followed an earlier generation, already forgotten
	}
	delete(h.remote, follower)
	t.dropIfUnwanted(h)
}

// dropIfUnwanted cancels a hub nobody reads any more and makes it
// unjoinable. Callers hold mu and h.mu.
func (t *hubTable) dropIfUnwanted(h *hub) {
	if h.local > 0 || len(h.remote) > 0 || h.ended || h.unwanted {
		return
	}
	h.unwanted = true
	t.forget(h)
	h.cancel(errNoInterest)
}

// recheck drops h if nobody reads it any more: a new generation forgets
// the remote followers of the last one, which may have been its only
// readers.
func (t *hubTable) recheck(h *hub) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	t.dropIfUnwanted(h)
}

// forget removes h from the joinable hubs. Callers hold mu.
func (t *hubTable) forget(h *hub) {
	if h.hubKey != "" && t.byKey[h.hubKey] == h {
		delete(t.byKey, h.hubKey)
	}
}

// lead registers h as leading genID until the returned func is called.
func (t *hubTable) lead(genID string, h *hub) (stop func()) {
	t.mu.Lock()
	t.leading[genID] = h
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		delete(t.leading, genID)
		t.mu.Unlock()
	}
}

// leader returns the hub leading genID on this worker, or nil.
func (t *hubTable) leader(genID string) *hub {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.leading[genID]
}

// finished removes a hub whose goroutine has returned.
func (t *hubTable) finished(h *hub) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.forget(h)
}

// sweep removes hubs that ended but are still listed as joinable (the
// janitor's backstop).
func (t *hubTable) sweep() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for key, h := range t.byKey {
		if h.isEnded() {
			delete(t.byKey, key)
		}
	}
}

// stop refuses new hubs from now on. Under mu, so no hub starts after Stop
// begins waiting for them.
func (t *hubTable) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopping = true
}
