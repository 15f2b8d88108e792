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
func (reg *registry) add(r *request) bool {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if _, dup := reg.active[r.reqKey]; dup {
		return false
	}
	reg.active[r.reqKey] = r
	return true
}

func (reg *registry) remove(r *request) {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if reg.active[r.reqKey] == r {
		delete(reg.active, r.reqKey)
	}
}

func (reg *registry) get(key string) *request {
	reg.mu.RLock()
	defer reg.mu.RUnlock()
	return reg.active[key]
}

func (reg *registry) len() int {
	reg.mu.RLock()
	defer reg.mu.RUnlock()
	return len(reg.active)
}
