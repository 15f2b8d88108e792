package manager

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/protocol"
)

// fleetShares is a counting semaphore shared by every worker of the fleet:
// at most limit() holders at once, each holding one share — a key of the
// in-flight bucket, keyOf(i) for an i below the limit, created with
// compare-and-swap (Create) and renewed like a lease (lease.go). A worker
// that dies stops renewing, and its shares expire with the bucket's TTL:
// they come back within LEASE_TTL, never leak.
//
// A worker has one fleetShares per scope (a tenant's max_inflight, an
// upstream's max_streams). Requests waiting here are served by priority
// (high, normal, low), round-robin between tenants within a priority, in
// arrival order within a tenant (next); one goroutine, the acquirer, wins
// shares for them: it watches the scope's
// keys, so it knows which are held (renewals keep them fresh in its view;
// one not renewed for a TTL has expired) and tries only those that look
// free. It wakes when a share is released anywhere in the fleet, when the
// limit changes, and when a held key may have expired.
//
// A share whose renewal fails (a worker cut off from NATS longer than the
// TTL) is lost: another worker may take it while the generation holding it
// goes on, so the limit can be exceeded for as long as such a generation
// runs. A limit lowered while more shares are held is reached as they are
// released: none is taken while as many as the limit are held.
type fleetShares struct {
	m       *Manager
	scope   string             // for logs: "tenant acme"
	keyOf   func(i int) string // the key of share i
	pattern string             // matches every key of the scope
	// limit returns the limit now (0: none) and a channel closed when it
	// may have changed.
	limit func() (int, <-chan struct{})

	mu      sync.Mutex
	queue   []*shareWaiter
	running bool              // the acquirer runs
	wake    chan struct{}     // buffered: a waiter arrived, or a share was released here
	grants  uint64            // shares handed out, numbering them for served
	served  map[string]uint64 // by tenant: the grant it got last, for round-robin
}

// shareWaiter is one request for a share.
type shareWaiter struct {
	who     leaseValue    // written into the share's key: who holds it
	rank    int           // its job's priority rank: lower goes first
	since   time.Time     // when it began to wait: waiting ages it up
	once    bool          // try one round only: do not wait
	granted chan *share   // buffered; receives the share (nil once the limit is gone)
	refused chan struct{} // closed when a once waiter found every share held
}

// share is one held share.
type share struct {
	s *fleetShares
	l *lease
}

// errNoShare: a request that would not wait found every share held.
var errNoShare = errors.New("manager: every share is held")

func newFleetShares(m *Manager, scope string, keyOf func(int) string, pattern string, limit func() (int, <-chan struct{})) *fleetShares {
	return &fleetShares{m: m, scope: scope, keyOf: keyOf, pattern: pattern, limit: limit, wake: make(chan struct{}, 1)}
}

// acquire takes a share for who, a job of priority p, waiting for one if
// wait (until ctx ends), or trying one round only (errNoShare then). Without a limit it
// returns nil, which release accepts. It may only be called from a
// goroutine the manager's background group counts (a hub's), since it may
// start the acquirer in that group.
func (s *fleetShares) acquire(ctx context.Context, who leaseValue, wait bool, p protocol.Priority) (*share, error) {
	if n, _ := s.limit(); n <= 0 {
		return nil, nil
	}
	rank := p.Rank()
	if rank < 0 {
		rank = protocol.PriorityNormal.Rank()
	}
	w := &shareWaiter{who: who, rank: rank, since: time.Now(), once: !wait, granted: make(chan *share, 1), refused: make(chan struct{})}
	if !s.enqueue(w) {
		return nil, errShutdown
	}
	select {
	case sh := <-w.granted:
		return sh, nil
	case <-w.refused:
		return nil, errNoShare
	case <-ctx.Done():
		if !s.dequeue(w) {
			// The acquirer took it from the queue first, and answered
			// under the same lock: a share to give back, or a refusal.
			select {
			case sh := <-w.granted:
				sh.release()
			default:
			}
		}
		return nil, ctx.Err()
	}
}

// enqueue queues w and makes sure the acquirer runs; false once the
// manager stops.
func (s *fleetShares) enqueue(w *shareWaiter) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m.life.Err() != nil {
		return false
	}
	s.queue = append(s.queue, w)
	if !s.running {
		s.running = true
		// The caller runs in the background group, so the group's count
		// is above zero here: Stop's Wait cannot have returned.
		s.m.background.Add(1)
		go func() { // owned by the manager: it ends with m.life, or once idle for a TTL
			defer s.m.background.Done()
			s.run()
		}()
	}
	s.poke()
	return true
}

// dequeue removes w if it is still queued.
func (s *fleetShares) dequeue(w *shareWaiter) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.queue {
		if x == w {
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			return true
		}
	}
	return false
}

// poke wakes the acquirer.
func (s *fleetShares) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// release gives the share back: its key is deleted (if still ours), which
// wakes every worker's acquirer of the scope. Safe on nil.
func (sh *share) release() {
	if sh == nil {
		return
	}
	ctx, cancel := context.WithTimeout(sh.s.m.hard, sh.s.m.leaseTTL()/2)
	defer cancel()
	if err := sh.l.release(ctx); err != nil {
		sh.s.m.cfg.Logger.Debug("share not released; it expires by itself", "scope", sh.s.scope, "key", sh.l.key, "err", err)
	}
	sh.s.poke()
}

// heldView is the acquirer's view of the scope's keys: when each held one
// was last seen written, by index, on this worker's clock.
type heldView map[int]time.Time

// note takes one update of the scope's keys.
func (v heldView) note(e jetstream.KeyValueEntry) {
	i, err := strconv.Atoi(e.Key()[strings.LastIndexByte(e.Key(), '.')+1:])
	if err != nil {
		return
	}
	if e.Operation() == jetstream.KeyValuePut {
		v[i] = time.Now()
	} else {
		delete(v, i)
	}
}

// free returns a share index below limit that looks free, starting at a
// random one so workers spread over the keys; false when as many shares as
// the limit look held.
func (v heldView) free(limit int, ttl time.Duration) (int, bool) {
	now := time.Now()
	held := 0
	for _, seen := range v {
		if now.Sub(seen) < ttl {
			held++
		}
	}
	if held >= limit {
		return 0, false
	}
	start := rand.IntN(limit)
	for k := range limit {
		i := (start + k) % limit
		if seen, ok := v[i]; !ok || now.Sub(seen) >= ttl {
			return i, true
		}
	}
	return 0, false
}

// nextExpiry is how long until a key seen held may have expired, bounded
// to [10ms, ttl/3].
func (v heldView) nextExpiry(ttl time.Duration) time.Duration {
	next := ttl / 3
	now := time.Now()
	for _, seen := range v {
		if d := seen.Add(ttl).Sub(now); d > 0 && d < next {
			next = d
		}
	}
	return max(next, 10*time.Millisecond)
}

// run is the acquirer: it grants shares to the queue in order until the
// queue has been empty for a TTL, or the manager stops.
func (s *fleetShares) run() {
	ttl := s.m.leaseTTL()
	view := heldView{}
	var updates <-chan jetstream.KeyValueEntry
	synced := true
	if w, err := s.m.topo.Inflight.Watch(s.m.life, s.pattern); err != nil {
		// Without a view every key is tried, every third of a TTL.
		s.m.cfg.Logger.Warn("cannot watch shares; polling them", "scope", s.scope, "err", err)
	} else {
		defer func() { _ = w.Stop() }()
		updates, synced = w.Updates(), false
	}
	// The other workers' best waiting ranks (sharerank.go).
	ads := newRankAds(s)
	var adUpdates <-chan jetstream.KeyValueEntry
	if w, err := s.m.topo.Inflight.Watch(s.m.life, ads.pattern); err == nil {
		defer func() { _ = w.Stop() }()
		adUpdates = w.Updates()
	}
	defer ads.publish(ttl) // withdrawn once idle
	timer := time.NewTimer(ttl / 3)
	defer timer.Stop()
	var idleSince time.Time
	for {
		if synced {
			s.grant(view, ads, ttl)
		}
		ads.publish(ttl)
		_, limitChanged := s.limit()
		wait := view.nextExpiry(ttl)
		if s.idle() {
			if idleSince.IsZero() {
				idleSince = time.Now()
			}
			if time.Since(idleSince) >= ttl && s.stopIfIdle() {
				return
			}
			wait = ttl - time.Since(idleSince)
		} else {
			idleSince = time.Time{}
		}
		timer.Reset(wait)
		select {
		case e, ok := <-adUpdates:
			switch {
			case !ok:
				adUpdates = nil // no view of the others: serve by this worker's order only
			case e != nil:
				ads.note(e)
			}
		case e, ok := <-updates:
			switch {
			case !ok:
				updates, synced = nil, true // the watch ended: poll
			case e == nil:
				synced = true // the initial values are in
			default:
				view.note(e)
			}
		case <-s.wake:
		case <-limitChanged:
		case <-timer.C:
		case <-s.m.life.Done():
			s.mu.Lock()
			s.running = false
			s.mu.Unlock()
			return
		}
	}
}

func (s *fleetShares) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue) == 0
}

// stopIfIdle ends the acquirer when nobody waits: under mu, so a waiter
// queued after this starts a new one.
func (s *fleetShares) stopIfIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) > 0 {
		return false
	}
	s.running = false
	return true
}

// grant wins shares for the queue, in order, while any look free and no
// other worker waits with a better priority; then refuses the waiters that
// would not wait.
func (s *fleetShares) grant(view heldView, ads *rankAds, ttl time.Duration) {
	for !s.idle() {
		limit, _ := s.limit()
		if limit <= 0 {
			s.grantAll() // the limit is gone: nobody needs a share
			return
		}
		if rank, ok := s.nextRank(); ok && ads.better(rank, ttl) {
			break // another worker waits with a better priority: its share
		}
		i, ok := view.free(limit, ttl)
		if !ok {
			break
		}
		l, err := s.create(i)
		switch {
		case errors.Is(err, jetstream.ErrKeyExists):
			// Held after all (our view lags), or held past its TTL by a
			// moment: look again shortly unless a renewal shows up.
			view[i] = time.Now().Add(-ttl + 250*time.Millisecond)
			continue
		case err != nil:
			if s.m.life.Err() == nil {
				s.m.cfg.Logger.Warn("cannot take a share; trying again", "scope", s.scope, "err", err)
			}
			s.refuseOnce()
			return
		}
		view[i] = time.Now()
		s.hand(l)
	}
	s.refuseOnce()
}

// create takes share i for the first waiter.
func (s *fleetShares) create(i int) (*lease, error) {
	s.mu.Lock()
	var who leaseValue
	if len(s.queue) > 0 {
		who = s.queue[s.next()].who
	}
	s.mu.Unlock()
	b, err := json.Marshal(who)
	if err != nil {
		return nil, err
	}
	ttl := s.m.leaseTTL()
	ctx, cancel := context.WithTimeout(s.m.hard, ttl/2)
	defer cancel()
	sent := time.Now()
	key := s.keyOf(i)
	rev, err := s.m.topo.Inflight.Create(ctx, key, b)
	if err != nil {
		return nil, err
	}
	return &lease{kv: s.m.topo.Inflight, key: key, value: b, ttl: ttl, sent: sent, rev: rev}, nil
}

// hand gives l to the first waiter, keeping it alive from now on; with
// nobody left waiting it is released.
func (s *fleetShares) hand(l *lease) {
	s.mu.Lock()
	if len(s.queue) > 0 {
		i := s.next()
		w := s.queue[i]
		s.queue = append(s.queue[:i], s.queue[i+1:]...)
		s.noteServed(w.who.Tenant)
		l.keep(func() { // on the lease's timer, under its lock: only log
			s.m.cfg.Logger.Warn("share lost: not renewed in time; another worker may take it while this generation goes on",
				"scope", s.scope, "key", l.key)
		})
		w.granted <- &share{s: s, l: l}
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	(&share{s: s, l: l}).release()
}

// next is the index of the waiter the next share goes to: the best
// priority — each shareAging a waiter has waited counts as one priority
// higher, so lower priorities still progress under a stream of higher
// ones; among those, the tenant served longest ago (round-robin, a tenant
// never served first); then arrival order. The queue is not empty; mu is
// held.
func (s *fleetShares) next() int {
	now := time.Now()
	best := 0
	for i, w := range s.queue[1:] {
		b := s.queue[best]
		if rw, rb := agedRank(w, now), agedRank(b, now); rw < rb || (rw == rb && s.served[w.who.Tenant] < s.served[b.who.Tenant]) {
			best = i + 1
		}
	}
	return best
}

// shareAging is how long a waiter waits to count one priority higher.
const shareAging = 10 * time.Second

// agedRank is w's priority rank at now, aged by its wait.
func agedRank(w *shareWaiter, now time.Time) int { return w.rank - int(now.Sub(w.since)/shareAging) }

// noteServed records a grant to tenant, forgetting tenants nobody waits
// for once the record outgrows the queue: a producer's tenant names must
// not grow it. mu is held.
func (s *fleetShares) noteServed(tenant string) {
	if s.served == nil {
		s.served = map[string]uint64{}
	}
	s.grants++
	s.served[tenant] = s.grants
	if len(s.served) > 2*len(s.queue)+64 {
		waiting := map[string]bool{}
		for _, w := range s.queue {
			waiting[w.who.Tenant] = true
		}
		for t := range s.served {
			if !waiting[t] {
				delete(s.served, t)
			}
		}
	}
}

// grantAll lets every waiter go without a share.
func (s *fleetShares) grantAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.queue {
		w.granted <- nil
	}
	s.queue = nil
}

// refuseOnce refuses the waiters that would not wait.
func (s *fleetShares) refuseOnce() {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.queue[:0]
	for _, w := range s.queue {
		if w.once {
			close(w.refused)
		} else {
			kept = append(kept, w)
		}
	}
	s.queue = kept
}

// shareTable holds this worker's fleetShares, by scope.
type shareTable struct {
	m  *Manager
	mu sync.Mutex
	by map[string]*fleetShares
}

// upstream returns the shares of the upstream's fleet-wide max_streams,
// scaled down by its backoff.
func (t *shareTable) upstream(up string) *fleetShares {
	names := t.m.cfg.Names
	return t.scope("upstream "+up, func() *fleetShares {
		return newFleetShares(t.m, "upstream "+up, func(i int) string { return names.UpstreamShareKey(up, i) }, names.UpstreamShares(up),
			func() (int, <-chan struct{}) {
				st, changed := t.m.upstreams.get(up)
				return st.effective(time.Now()).MaxStreams, changed
			})
	})
}

// scope returns the shares of scope, made by make the first time.
func (t *shareTable) scope(scope string, make func() *fleetShares) *fleetShares {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.by[scope]; s != nil {
		return s
	}
	s := make()
	if t.by == nil {
		t.by = map[string]*fleetShares{}
	}
	t.by[scope] = s
	return s
}

// tenant returns the shares of tenant's max_inflight.
func (t *shareTable) tenant(tenant string) *fleetShares {
	names := t.m.cfg.Names
	return t.scope("tenant "+tenant, func() *fleetShares {
		return newFleetShares(t.m, "tenant "+tenant, func(i int) string { return names.TenantShareKey(tenant, i) }, names.TenantShares(tenant),
			func() (int, <-chan struct{}) {
				limits, _, changed := t.m.tenants.get(tenant)
				return limits.MaxInflight, changed
			})
	})
}
