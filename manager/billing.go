package manager

import "github.com/chatfleet/chatfleet/protocol"

// What a done event says a request cost its tenant: only a request that
// led its generation used upstream tokens; one that followed another
// request's generation, or read the cache, used none (the tokens saved,
// usage.go). Shared says the generation served more than one request.

// shared reports whether the hub's generation serves other requests than
// its creator now: more than one local request, or followers on other
// workers. A request that left before the end does not count.
func (h *hub) shared() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.local > 1 || len(h.remote) > 0
}

// bill fills a done event's shared and billed_usage for this request,
// from its role and its hub's end.
func (r *request) bill(ev *protocol.Event, end *ending) {
	if ev.Type != protocol.EventDone {
		return
	}
	switch r.role {
	case protocol.RoleLeader:
		ev.Shared = end.shared
		if end.usage != nil {
			u := *end.usage
			ev.BilledUsage = &u
		}
	case protocol.RoleFollower:
		ev.Shared = true
		if end.usage != nil {
			ev.BilledUsage = &protocol.Usage{}
		}
	case protocol.RoleCache:
		if end.usage != nil {
			ev.BilledUsage = &protocol.Usage{}
		}
	}
}
