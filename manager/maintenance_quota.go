package manager

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/protocol"
)

// Tenants' own max_queued. The jobs stream caps every tenant's jobs alike
// (CHATFLEET_MAX_QUEUED_PER_TENANT: the publish is refused); a tenant's
// max_queued in the tenants bucket lowers its own cap, and the fleet's
// maintainer enforces it: every scan it counts each such tenant's jobs in
// the stream (waiting or running, as the stream's cap counts them), and
// when a tenant has more, it ends the newest of its jobs no worker has
// pulled yet, as many as it is over, with quota_exceeded — stored only as
// the reply's first event, as for queue timeouts, so a worker pulling the
// job at that moment and the maintainer never both answer it — and
// deletes them from the stream. Jobs already pulled are never ended for
// it. Until the next scan (MaintenanceInterval) a tenant may be over.

// enforceMaxQueued ends the jobs over their tenants' max_queued, counted
// over all their priorities; qs is the queues' state of this scan.
func (m *Manager) enforceMaxQueued(ctx context.Context, qs queueState) {
	caps := m.tenants.maxQueued()
	if len(caps) == 0 {
		return
	}
	st, err := m.topo.Jobs.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		if ctx.Err() == nil {
			m.cfg.Logger.Warn("maintenance: cannot count the jobs per tenant", "err", err)
		}
		return
	}
	for tenant, limit := range caps {
		var n int64
		for _, subject := range m.queueSubjects(tenant) {
			n += int64(st.State.Subjects[subject])
		}
		if n <= limit {
			continue
		}
		queued, err := m.queuedOf(ctx, tenant, qs)
		if err != nil {
			if ctx.Err() == nil {
				m.cfg.Logger.Warn("maintenance: cannot read a tenant's queued jobs", "tenant", tenant, "err", err)
			}
			continue
		}
		over := int(min(n-limit, int64(len(queued))))
		for _, seq := range queued[len(queued)-over:] {
			if ctx.Err() != nil {
				return
			}
			m.endOverQueued(ctx, seq, n, limit)
		}
	}
}

// queueSubjects are the subjects of tenant's queues, one per priority.
func (m *Manager) queueSubjects(tenant string) []string {
	n := m.cfg.Names
	return []string{n.PriorityJobs(tenant, string(protocol.PriorityHigh)), n.Jobs(tenant), n.PriorityJobs(tenant, string(protocol.PriorityLow))}
}

// queuedOf returns the stream sequences of tenant's jobs no worker has
// pulled, of every priority, oldest first.
func (m *Manager) queuedOf(ctx context.Context, tenant string, qs queueState) ([]uint64, error) {
	var out []uint64
	for _, subject := range m.queueSubjects(tenant) {
		seq := uint64(1)
		if info := qs.consumerOf(subject); info != nil {
			seq = info.Delivered.Stream + 1
		}
		for {
			msg, err := m.topo.Jobs.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				break
			}
			if err != nil {
				return nil, err
			}
			out = append(out, msg.Sequence)
			seq = msg.Sequence + 1
		}
	}
	slices.Sort(out)
	return out, nil
}

// endOverQueued ends the queued job at seq, one of n of its tenant's jobs
// over limit, and deletes it from the stream, unless a worker has begun
// its reply.
func (m *Manager) endOverQueued(ctx context.Context, seq uint64, n, limit int64) {
	msg, err := m.topo.Jobs.GetMsg(ctx, seq)
	if err != nil {
		return // acked or removed meanwhile, or unreadable now: the next scan looks again
	}
	job := m.queuedJob(msg)
	if job == nil {
		return // invalid: the worker that pulls it rejects it
	}
	ev := protocol.Event{Type: protocol.EventError, Error: &protocol.Error{Code: protocol.CodeQuotaExceeded, Limit: protocol.LimitMaxQueued,
		Message: fmt.Sprintf("tenant %s had %d jobs queued, over its max_queued of %d; the newest were removed from the queue", job.Tenant, n, limit)}}
	stored, ended, err := m.endQueued(ctx, msg, job, ev)
	switch {
	case err != nil:
		m.cfg.Logger.Warn("maintenance: cannot end a job over its tenant's max_queued", "tenant", job.Tenant, "request", job.ID, "err", err)
		return
	case !ended:
		return // a worker pulled it and began its reply: it is the worker's
	case stored:
		m.cfg.Logger.Info("job over its tenant's max_queued ended and removed from the queue", "tenant", job.Tenant,
			"request", job.ID, "seq", seq, "queued", n, "max_queued", limit)
	}
	if err := m.topo.Jobs.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		m.cfg.Logger.Warn("maintenance: cannot delete an ended job from the queue", "seq", seq, "err", err)
	}
}
