package manager

import (
	"fmt"
	"time"

	"github.com/chatfleet/chatfleet/protocol"
)

// Pausing a tenant. The jobs stream has one consumer for every tenant,
// delivering in order, so a paused tenant's jobs cannot be left in the
// stream while others' are pulled past them; and handing them back (a nak
// with a delay) spends one of MaxDeliver deliveries each time, so a long
// pause would dead-letter them. Instead a worker that pulls a paused
// tenant's job parks it: the job trades its request slot for a parked slot
// (Slots), reports progress — to JetStream every third of the ack wait, to
// its reader as progress events (waiting, tenant_paused) — and is served
// once the tenant is resumed. Parked slots are bounded (MaxParkedJobs a
// worker): beyond them a paused job keeps its request slot, and a worker
// all of whose slots hold paused jobs stops pulling.

// waitWhilePaused holds the request, before it is served, while its tenant
// is paused. The wait counts as queued: once the job's queue timeout has
// passed since it arrived, it ends with queue_timeout. It returns false
// when the request ended meanwhile (cancelled, timed out, handed back).
func (r *request) waitWhilePaused() bool {
	limits, _, changed := r.m.tenants.get(r.job.Tenant)
	if !limits.Paused {
		return true
	}
	r.permit.parkForTenant()
	label := r.m.tenantLabel(r.job.Tenant)
	r.m.countTenantWaiting(label, protocol.ReasonTenantPaused, 1)
	defer r.m.countTenantWaiting(label, protocol.ReasonTenantPaused, -1)
	r.stage, r.reason = protocol.StageWaiting, protocol.ReasonTenantPaused
	if r.publish(protocol.Event{Type: protocol.EventProgress, Stage: r.stage, Reason: r.reason}) != nil {
		return false
	}
	var overdue <-chan time.Time
	limit := queueTimeout(r.m.topo.Config.QueueTimeout, r.job.QueueTimeoutMS)
	if limit > 0 {
		t := time.NewTimer(time.Until(r.arrived.Add(limit)))
		defer t.Stop()
		overdue = t.C
	}
	alive := time.NewTicker(r.progressEvery())
	defer alive.Stop()
	quiet := time.NewTimer(r.m.cfg.ProgressInterval)
	defer quiet.Stop()
	for {
		select {
		case <-changed:
			if limits, _, changed = r.m.tenants.get(r.job.Tenant); !limits.Paused {
				r.stage, r.reason = "", ""
				return true
			}
		case <-alive.C:
			r.progress()
		case <-quiet.C:
			if r.heartbeat() != nil {
				return false
			}
			quiet.Reset(r.m.cfg.ProgressInterval)
		case <-overdue:
			r.endWithError(&protocol.Error{Code: protocol.CodeQueueTimeout,
				Message: fmt.Sprintf("tenant %s is paused; the job waited %s, its queue timeout", r.job.Tenant, limit)})
			return false
		case <-r.m.draining:
			// This worker is stopping: another one parks the job, rather
			// than this one hold its stop up for the whole grace period.
			r.nak(0)
			return false
		case <-r.ctx.Done():
			r.endByContext()
			return false
		}
	}
}

// Drain tells the manager its worker has stopped pulling and now waits
// for its jobs to finish (the grace period): jobs waiting for a paused
// tenant, which would not finish, are handed back at once, for another
// worker. Everything else goes on until Stop. Safe to call twice.
func (m *Manager) Drain() {
	m.drainOnce.Do(func() { close(m.draining) })
}
