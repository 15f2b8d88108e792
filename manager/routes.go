package manager

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/kvmirror"
	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/protocol"
)

// Upstream is one more upstream a worker may send generations to, besides
// the default one New takes (named protocol.DefaultUpstream, serving every
// model no other upstream lists).
type Upstream struct {
	// Name is its key in the upstreams bucket and its label in logs and
	// the status; a valid subjects name, not "default". Required.
	Name string
	// Client calls it. Required.
	Client *llm.Client
	// Models are the models it serves; jobs for them go to it (and to the
	// other upstreams listing them), never to the default. Required.
	Models []string
	// Weight is its share of the load among the upstreams of a model: the
	// least loaded by held streams ÷ weight is picked. Defaults to 1.
	Weight int
	// Limits are its fleet-wide limits while the upstreams bucket holds
	// none for it. Defaults to none.
	Limits protocol.UpstreamLimits
}

// route is one upstream as the leader sees it when it picks one.
type route struct {
	name    string
	client  *llm.Client
	models  []string // nil: the default, for every model no route lists
	weight  int
	streams atomic.Int64 // streams open on this worker now
}

// routeTable holds the worker's upstreams and the fleet's view of their
// load: the stream shares held per upstream across the fleet, seen in the
// in-flight bucket (only upstreams with a max_streams take shares; for
// the others the load is this worker's own streams).
type routeTable struct {
	m      *Manager
	routes []*route // the default first

	mu   sync.Mutex
	held map[string]map[string]time.Time // by upstream: share key → when last written
}

func newRouteTable(m *Manager, def *llm.Client) *routeTable {
	t := &routeTable{m: m, routes: []*route{{name: protocol.DefaultUpstream, client: def, weight: 1}}, held: map[string]map[string]time.Time{}}
	for _, u := range m.cfg.Upstreams {
		t.routes = append(t.routes, &route{name: u.Name, client: u.Client, models: u.Models, weight: max(u.Weight, 1)})
	}
	return t
}

// candidates returns the upstreams serving model, the one to try first
// first: healthy ones (breaker not open) before the rest, then the least
// loaded for its weight; ties in random order, so workers spread.
func (t *routeTable) candidates(model string) []*route {
	var out []*route
	for _, r := range t.routes[1:] {
		if slices.Contains(r.models, model) {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return t.routes[:1]
	}
	if len(out) == 1 {
		return out
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	now := time.Now()
	type scored struct {
		r    *route
		open bool
		load float64
	}
	s := make([]scored, len(out))
	for i, r := range out {
		s[i] = scored{r, r.client.Stats().BreakerState == llm.BreakerOpen, t.load(r, now)}
	}
	slices.SortStableFunc(s, func(a, b scored) int {
		switch {
		case a.open != b.open:
			if a.open {
				return 1
			}
			return -1
		case a.load < b.load:
			return -1
		case a.load > b.load:
			return 1
		}
		return 0
	})
	for i := range s {
		out[i] = s[i].r
	}
	return out
}

// load is r's streams per unit of weight: the fleet's shares of it held
// now when it has a stream cap, else this worker's streams.
func (t *routeTable) load(r *route, now time.Time) float64 {
	n := r.streams.Load()
	if st, _ := t.m.upstreams.get(r.name); st.limits.MaxStreams > 0 {
		n = int64(t.fleetHeld(r.name, now))
	}
	return float64(n) / float64(r.weight)
}

// fleetHeld counts r's shares renewed within a lease TTL.
func (t *routeTable) fleetHeld(name string, now time.Time) int {
	ttl := t.m.leaseTTL()
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, seen := range t.held[name] {
		if now.Sub(seen) < ttl {
			n++
		}
	}
	return n
}

// apply takes one update of the upstreams' share keys,
// _shares.upstream.<name>.<i>.
func (t *routeTable) apply(e jetstream.KeyValueEntry) {
	rest, ok := strings.CutPrefix(e.Key(), "_shares.upstream.")
	if !ok {
		return
	}
	name, _, _ := strings.Cut(rest, ".")
	t.mu.Lock()
	defer t.mu.Unlock()
	keys := t.held[name]
	if keys == nil {
		if len(t.held) >= len(t.routes) || !t.known(name) {
			return // not an upstream of this worker
		}
		keys = map[string]time.Time{}
		t.held[name] = keys
	}
	if e.Operation() == jetstream.KeyValuePut {
		keys[e.Key()] = time.Now()
	} else {
		delete(keys, e.Key())
	}
}

func (t *routeTable) known(name string) bool {
	for _, r := range t.routes {
		if r.name == name {
			return true
		}
	}
	return false
}

// watchLoad follows the upstreams' share keys when this worker has more
// than one upstream to choose between; until the manager stops.
func (m *Manager) watchLoad(ctx context.Context) error {
	if len(m.routes.routes) < 2 {
		return nil
	}
	mirror, err := kvmirror.Start(ctx, m.nc, m.topo.Inflight, "_shares.upstream.>", m.cfg.Logger, m.routes.apply)
	if err != nil {
		return err
	}
	m.loadMirror = mirror
	return nil
}

// failsOver reports whether a generation that failed with err, before any
// output, may try the next upstream: the upstream could not be reached
// (a connection error, after the client's retries) or its circuit breaker
// is open. An answer the upstream gave (a 4xx, a 5xx, a 429) stays: the
// same request elsewhere is not known to fare better, and retries already
// ran.
func failsOver(err error) bool {
	var lerr *llm.Error
	if !errors.As(err, &lerr) {
		return false
	}
	return errors.Is(lerr, llm.ErrBreakerOpen) || (lerr.Code == protocol.CodeUpstreamUnavailable && lerr.Status == 0)
}

// UpstreamStats describes one of this worker's upstreams.
type UpstreamStats struct {
	Name    string `json:"name,omitempty"`
	Calls   uint64 `json:"calls"`   // HTTP attempts
	Retries uint64 `json:"retries"` // of them, retries
	Errors  uint64 `json:"errors"`  // failed attempts
	Breaker string `json:"breaker"` // closed, open or half-open
	Streams int64  `json:"streams"` // open on this worker now
}

// Upstream returns the default upstream's counters.
func (m *Manager) Upstream() UpstreamStats { return m.routes.stats(m.routes.routes[0]) }

// Upstreams returns every upstream's counters, the default first.
func (m *Manager) Upstreams() []UpstreamStats {
	out := make([]UpstreamStats, len(m.routes.routes))
	for i, r := range m.routes.routes {
		out[i] = m.routes.stats(r)
	}
	return out
}

func (t *routeTable) stats(r *route) UpstreamStats {
	s := r.client.Stats()
	return UpstreamStats{Name: r.name, Calls: s.Calls, Retries: s.Retries, Errors: s.Failures, Breaker: s.BreakerState, Streams: r.streams.Load()}
}
