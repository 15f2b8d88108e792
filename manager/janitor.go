package manager

import (
	"time"
)

// janitor sweeps every JanitorInterval until the manager stops. Each
// request has its own timer for its processing timeout; the janitor is the
// backstop for what a timer cannot see: a request stuck past its deadline,
// memory of old cancels, hubs left behind.
func (m *Manager) janitor() {
	t := time.NewTicker(m.cfg.JanitorInterval)
	defer t.Stop()
	for {
		select {
		case <-m.life.Done():
			return
		case now := <-t.C:
			m.sweep(now)
		}
	}
}

// sweep does one round:
//   - a request past its deadline (its timer should have ended it) is
//     cancelled with a timeout;
//   - a request still registered long after that is stuck beyond help: it
//     is purged from the registry, so cancels and status stop seeing it;
//   - cancels older than the cancel bucket's TTL are forgotten;
//   - hubs that ended but are still listed as joinable are dropped.
func (m *Manager) sweep(now time.Time) {
	stale := m.ackWait() + 10*m.cfg.JanitorInterval
	m.requests.mu.Lock()
	for key, r := range m.requests.active {
		switch {
		case now.After(r.deadline.Add(stale)):
			delete(m.requests.active, key)
			m.stats.purged.Add(1)
			m.cfg.Logger.Error("stale request purged from the registry", "tenant", r.job.Tenant, "request", r.job.ID,
				"deadline", r.deadline)
		case now.After(r.deadline.Add(m.cfg.JanitorInterval)):
			r.cancel(errTimeout)
		}
	}
	m.requests.mu.Unlock()

	m.cancels.purge(now.Add(-m.topo.Config.CancelTTL))

	m.hubs.sweep()
}
