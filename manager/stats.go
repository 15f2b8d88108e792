package manager

import "sync/atomic"

// Stats counts what a worker has done since it started. Its JSON (in
// `chatfleet status --json`) uses snake_case keys, like every other
// chatfleet JSON.
type Stats struct {
	Requests      int64 `json:"requests"`       // jobs handled
	Leaders       int64 `json:"leaders"`        // requests that led their generation
	Followers     int64 `json:"followers"`      // requests that shared another request's generation
	CacheHits     int64 `json:"cache_hits"`     // requests answered from the cache
	UpstreamCalls int64 `json:"upstream_calls"` // upstream streams opened
	Takeovers     int64 `json:"takeovers"`      // generations taken over from a leader that died
	LeasesLost    int64 `json:"leases_lost"`    // leader leases lost while generating
	Cancelled     int64 `json:"cancelled"`      // requests that ended cancelled
	Errors        int64 `json:"errors"`         // requests that ended with an error event
	DeadLettered  int64 `json:"dead_lettered"`  // jobs copied to the dead-letter stream
	QueueTimeouts int64 `json:"queue_timeouts"` // jobs that waited too long in the queue
	Panics        int64 `json:"panics"`         // panics recovered while handling a job
	Purged        int64 `json:"purged"`         // stuck requests the janitor purged from the registry
	Active        int64 `json:"active"`         // requests active now
	Generations   int64 `json:"generations"`    // generations this worker leads now
}

// roleNames index counters.inFlight.
var roleNames = [...]string{"routing", "leader", "follower", "cache"}

type counters struct {
	inFlight                                               [len(roleNames)]atomic.Int64
	requests, leaders, followers, cacheHits, upstreamCalls atomic.Int64
	takeovers, leasesLost, cancelled, errors, leading      atomic.Int64
	deadLettered, queueTimeouts, panics, purged            atomic.Int64
}

// Stats returns a snapshot of the counters.
func (m *Manager) Stats() Stats {
	c := &m.stats
	return Stats{
		Requests:      c.requests.Load(),
		Leaders:       c.leaders.Load(),
		Followers:     c.followers.Load(),
		CacheHits:     c.cacheHits.Load(),
		UpstreamCalls: c.upstreamCalls.Load(),
		Takeovers:     c.takeovers.Load(),
		LeasesLost:    c.leasesLost.Load(),
		Cancelled:     c.cancelled.Load(),
		Errors:        c.errors.Load(),
		DeadLettered:  c.deadLettered.Load(),
		QueueTimeouts: c.queueTimeouts.Load(),
		Panics:        c.panics.Load(),
		Purged:        c.purged.Load(),
		Active:        int64(m.requests.len()),
		Generations:   c.leading.Load(),
	}
}

// InFlight returns the requests on this worker now, by role: routing (not
// known yet), leader, follower, cache.
func (m *Manager) InFlight() map[string]int64 {
	out := make(map[string]int64, len(roleNames))
	for i, name := range roleNames {
		out[name] = m.stats.inFlight[i].Load()
	}
	return out
}

func roleIndex(label string) int {
	for i, name := range roleNames {
		if name == label {
			return i
		}
	}
	return 0
}
