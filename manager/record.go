package manager

import (
	"context"

	"github.com/chatfleet/chatfleet/protocol"
)

// Every counted event is counted here, once, in both views that show it:
// the Stats counters (the worker's status, `chatfleet status`) and the
// OTel instruments (metrics.go). A call site names the event; it never
// updates one view and forgets the other.

func (m *Manager) countUpstreamCall(ctx context.Context) {
	m.stats.upstreamCalls.Add(1)
	m.metrics.upstreamCalls.Add(ctx, 1)
}

func (m *Manager) countTakeover(ctx context.Context) {
	m.stats.takeovers.Add(1)
	m.metrics.takeovers.Add(ctx, 1)
}

func (m *Manager) countLeaseLost(ctx context.Context) {
	m.stats.leasesLost.Add(1)
	m.metrics.leasesLost.Add(ctx, 1)
}

func (m *Manager) countDeadLetter(ctx context.Context) {
	m.stats.deadLettered.Add(1)
	m.metrics.deadLetters.Add(ctx, 1)
}

func (m *Manager) countPanic() {
	m.stats.panics.Add(1)
	m.metrics.panics.Add(context.Background(), 1)
}

// countRole counts a request that learnt its role.
func (m *Manager) countRole(role protocol.Role) {
	switch role {
	case protocol.RoleLeader:
		m.stats.leaders.Add(1)
	case protocol.RoleFollower:
		m.stats.followers.Add(1)
	case protocol.RoleCache:
		m.stats.cacheHits.Add(1)
	}
}

// countEnding counts a terminal event stored for a job (n is 1, or -1 to
// take back a count made before a store that then failed). The metrics
// count the same jobs when they are settled (observe.go; jobSet), under
// their outcome, role and code.
func (m *Manager) countEnding(typ protocol.EventType, code protocol.Code, n int64) {
	switch typ {
	case protocol.EventCancelled:
		m.stats.cancelled.Add(n)
	case protocol.EventError:
		m.stats.errors.Add(n)
		if code == protocol.CodeQueueTimeout {
			m.stats.queueTimeouts.Add(n)
		}
	}
}
