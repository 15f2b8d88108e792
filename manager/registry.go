package manager

import "sync"

// registry is the set of requests active on this worker, by tenant.id: how
// a cancel finds its request, and what the janitor and status read.
type registry struct {
	mu     sync.RWMutex
	active map[string]*request
}

func newRegistry() *registry { return &registry{active: map[string]*request{}} }

// add registers r and returns nil, or returns the request already
// registered under its key.
func (reg *registry) add(r *request) *request {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if running, dup := reg.active[r.reqKey]; dup {
		return running
	}
	reg.active[r.reqKey] = r
	return nil
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
