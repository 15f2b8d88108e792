package manager

import "sync"

// registry is the set of requests active on this worker, by tenant.id: how
// a cancel finds its request, and what the janitor and status read.
type registry struct {
	mu     sync.RWMutex
	active map[string]*request
}

func newRegistry() *registry { return &registry{active: map[string]*request{}} }

// add registers r; false if a request with its key is already active.
func (g *registry) add(r *request) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, dup := g.active[r.key]; dup {
		return false
	}
	g.active[r.key] = r
	return true
}

func (g *registry) remove(r *request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.active[r.key] == r {
		delete(g.active, r.key)
	}
}

func (g *registry) get(key string) *request {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.active[key]
}

func (g *registry) len() int {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return len(g.active)
}
