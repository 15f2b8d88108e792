package manager

import (
	"context"
	"time"

	"github.com/chatfleet/chatfleet/protocol"
)

// SetServeHook installs f on m: it runs before each job m serves.
func (m *Manager) SetServeHook(f func(*protocol.Job)) { m.serveHook.Store(&f) }

// MaintenanceHooks let a test watch and steer one worker's maintainer;
// nil fields do nothing (Now: time.Now).
type MaintenanceHooks struct {
	Now      func() time.Time             // the clock queue deadlines are compared with
	Scanned  func()                       // a scan read the consumer's state; no job read yet
	Ended    func(seq uint64)             // a queue ending was stored; the job is not deleted yet
	Left     func(seq uint64)             // an overdue job's reply had begun: left to its worker
	Advisory func(seq uint64, acted bool) // a max-deliveries advisory was checked
}

// SetMaintenanceHooks installs h on m's maintainer.
func (m *Manager) SetMaintenanceHooks(h MaintenanceHooks) {
	x := noMaintenanceHooks
	if h.Now != nil {
		x.now = h.Now
	}
	if h.Scanned != nil {
		x.scanned = h.Scanned
	}
	if h.Ended != nil {
		x.ended = h.Ended
	}
	if h.Left != nil {
		x.left = h.Left
	}
	if h.Advisory != nil {
		x.advisory = h.Advisory
	}
	m.maint.hooks.Store(&x)
}

// WaitMaintaining waits until m maintains the fleet (want) or no longer
// does (!want).
func (m *Manager) WaitMaintaining(ctx context.Context, want bool) error {
	for {
		leading, changed := m.maint.state()
		if leading == want {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// CheckMaxDeliveries handles a max-deliveries advisory for the job at
// stream sequence seq, as if this worker had received it; it reports
// whether the job was given up.
func (m *Manager) CheckMaxDeliveries(ctx context.Context, seq uint64) bool {
	return m.checkMaxDeliveries(ctx, seq)
}

// SetQuotaClock makes m count token windows by now.
func (m *Manager) SetQuotaClock(now func() time.Time) { m.tenants.now.Store(&now) }

// WaitTenant waits until m's view of tenant's limits satisfies cond.
func (m *Manager) WaitTenant(ctx context.Context, tenant string, cond func(protocol.Tenant, protocol.TenantTokens) bool) error {
	for {
		limits, tokens, changed := m.tenants.get(tenant)
		if cond(limits, tokens) {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
