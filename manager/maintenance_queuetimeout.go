package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"

	"github.com/chatfleet/chatfleet/protocol"
)

// Queue timeouts while queued. A worker checks a job's queue timeout when
// it pulls it, but with every slot of every worker busy nobody pulls it:
// the maintainer ends such a job itself. It stores the job's terminal
// event under the single-writer rule — only as the reply's first event —
// and then deletes the job from the stream, so nobody runs it later.
//
// A worker that pulls the job at that very moment and the maintainer both
// try to store the reply's first event; the server lets exactly one of
// them. If the worker's went first, the maintainer leaves the job to it.
// If the maintainer's went first, the worker's first store is refused; it
// sees the reply has ended and terminates the job (request.superseded).

// queueTimeout is a job's queue timeout: the fleet's, or the job's own
// queue_timeout_ms when that is shorter — a job may shorten the fleet's
// timeout, never lengthen it. 0 means none.
func queueTimeout(fleet time.Duration, jobMS int64) time.Duration {
	d := max(fleet, 0)
	if jobMS > 0 && jobMS <= math.MaxInt64/int64(time.Millisecond) {
		if t := time.Duration(jobMS) * time.Millisecond; d == 0 || t < d {
			d = t
		}
	}
	return d
}

// queueTimeouts is the maintainer's task that ends jobs queued past their
// queue timeout. It keeps the deadline of every queued job it has read,
// so each job's body is read once per maintainer term, not once per scan.
type queueTimeouts struct {
	m    *Manager
	next uint64              // the first stream sequence not read yet
	due  map[uint64]queueDue // jobs read and not delivered, by stream sequence
}

// queueDue is a queued job's deadline and the subject (queue) it waits on.
type queueDue struct {
	deadline time.Time
	subject  string
}

func newQueueTimeouts(m *Manager) *queueTimeouts {
	return &queueTimeouts{m: m, due: map[uint64]queueDue{}}
}

// sweep reads the jobs queued since the last sweep and ends those past
// their deadline. A job counts as queued until its first delivery: until
// its queue's consumer delivered it (queueState.pulled). A job handed
// back after a delivery is not queued: its reply has begun, and its
// worker's processing timeout applies.
func (q *queueTimeouts) sweep(ctx context.Context, qs queueState, h *maintenanceHooks) {
	for seq, d := range q.due {
		if qs.pulled(d.subject, seq) {
			delete(q.due, seq) // pulled since: its worker checks it
		}
	}
	if err := q.read(ctx, qs); err != nil {
		if ctx.Err() == nil {
			q.m.cfg.Logger.Warn("maintenance: cannot read queued jobs", "err", err)
		}
	}
	now := h.now()
	var overdue []uint64
	for seq, d := range q.due {
		if !now.Before(d.deadline) {
			overdue = append(overdue, seq)
		}
	}
	slices.Sort(overdue)
	for _, seq := range overdue {
		if ctx.Err() != nil {
			return
		}
		if q.expire(ctx, seq, h) {
			delete(q.due, seq)
		}
	}
}

// read notes the deadline of every job from q.next on that is still
// queued.
func (q *queueTimeouts) read(ctx context.Context, qs queueState) error {
	fleet := q.m.topo.Config.QueueTimeout
	for {
		msg, err := q.m.topo.Jobs.GetMsg(ctx, q.next, jetstream.WithGetMsgSubject(">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if msg.Sequence > qs.lastSeq {
			return nil // stored after qs was read: the next scan knows whether it was pulled
		}
		q.next = msg.Sequence + 1
		if _, ok := q.m.topo.QueueOf(msg.Subject); !ok {
			q.m.dropStray(ctx, msg)
			continue
		}
		if qs.pulled(msg.Subject, msg.Sequence) {
			continue
		}
		var own struct {
			QueueTimeoutMS int64 `json:"queue_timeout_ms"`
		}
		_ = json.Unmarshal(msg.Data, &own) // a job that does not decode has the fleet's timeout
		if limit := queueTimeout(fleet, own.QueueTimeoutMS); limit > 0 {
			q.due[msg.Sequence] = queueDue{deadline: msg.Time.Add(limit), subject: msg.Subject}
		}
	}
}

// expire ends the overdue job at seq and deletes it from the stream. It
// reports whether the job needs no more attention: ended, gone, or left to
// the worker that started its reply; false means try again next sweep.
func (q *queueTimeouts) expire(ctx context.Context, seq uint64, h *maintenanceHooks) bool {
	m := q.m
	msg, err := m.topo.Jobs.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return true // acked or removed meanwhile
	}
	if err != nil {
		return false
	}
	job := m.queuedJob(msg)
	if job == nil {
		return true // invalid: the worker that pulls it rejects it
	}
	limit := queueTimeout(m.topo.Config.QueueTimeout, job.QueueTimeoutMS)
	ev := protocol.Event{Type: protocol.EventError, Error: &protocol.Error{Code: protocol.CodeQueueTimeout,
		Message: fmt.Sprintf("the job was still queued after %s, its queue timeout, with every worker busy; it was removed from the queue", limit)}}
	stored, ended, err := m.endQueued(ctx, msg, job, ev)
	switch {
	case err != nil:
		m.cfg.Logger.Warn("maintenance: cannot end a job queued past its timeout", "tenant", job.Tenant, "request", job.ID, "err", err)
		return false
	case !ended:
		// A worker pulled it and started its reply first: it is the
		// worker's now.
		h.left(seq)
		return true
	case stored:
		h.ended(seq)
		m.cfg.Logger.Info("job queued past its queue timeout ended and removed from the queue", "tenant", job.Tenant,
			"request", job.ID, "seq", seq, "waited", time.Since(msg.Time).Round(time.Millisecond), "limit", limit)
	}
	// Ended, by us now or before (an attempt whose answer was lost, or a
	// maintainer that stopped before this step): nobody is to run it.
	if err := m.topo.Jobs.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		m.cfg.Logger.Warn("maintenance: cannot delete an ended job from the queue", "seq", seq, "err", err)
		return false
	}
	return true
}

// countQueueEnding adds n to the counters of ev, a queued job's ending,
// and returns its metric attributes.
func (m *Manager) countQueueEnding(ev protocol.Event, n int64) metric.MeasurementOption {
	if ev.Type == protocol.EventCancelled {
		m.countEnding(ev.Type, "", n)
		return jobSet(string(ev.Type), "none", "")
	}
	m.countEnding(ev.Type, ev.Error.Code, n)
	return jobSet(string(ev.Type), "none", string(ev.Error.Code))
}

// endQueued ends job (msg in the jobs stream), still queued, with ev — or
// as cancelled when its producer cancelled it — and counts the ending it
// stored. The counters move before the store, so a producer hearing of the
// ending finds it counted, and back when the store did not happen.
func (m *Manager) endQueued(ctx context.Context, msg *jetstream.RawStreamMsg, job *protocol.Job, ev protocol.Event) (stored, ended bool, err error) {
	if m.cancels.has(m.cfg.Names.RequestKey(job.Tenant, job.ID)) {
		ev = protocol.Event{Type: protocol.EventCancelled}
	}
	count := m.countQueueEnding(ev, 1)
	stored, ended, err = m.storeQueuedEnding(ctx, msg, job, ev)
	if !stored {
		m.countQueueEnding(ev, -1)
		return stored, ended, err
	}
	m.metrics.jobs.Add(ctx, 1, count)
	m.countTenantEnding(ctx, job.Tenant, ev)
	return stored, ended, err
}

// storeQueuedEnding stores ev as the first event of the reply of job (msg
// in the jobs stream), only if the reply is still empty (the single-writer
// rule, as reject does). When it is not empty, ended reports whether the
// reply has ended anyway; a reply an earlier job with the same ID ended
// gets the job's duplicate_id error instead (endDuplicate), and counts as
// ended.
func (m *Manager) storeQueuedEnding(ctx context.Context, msg *jetstream.RawStreamMsg, job *protocol.Job, ev protocol.Event) (stored, ended bool, err error) {
	ev.V, ev.ID, ev.Seq = protocol.Version, job.ID, 1
	b, err := ev.Marshal()
	if err != nil {
		return false, false, err
	}
	subject := m.cfg.Names.ReplyWrite(job.Tenant, job.ID)
	// No message ID: the worker's first event carries subject:1 as its
	// ID, and a duplicate would be acknowledged instead of refused.
	_, err = m.js.PublishMsg(ctx, replyMsg(subject, msg.Sequence, 0, 1, b), jetstream.WithExpectLastSequencePerSubject(0))
	if err == nil {
		return true, true, nil
	}
	if !isWrongLastSequence(err) {
		return false, false, err
	}
	reply, err := m.readReply(ctx, subject, msg.Sequence, msg.Time)
	if err != nil || !reply.earlier || !reply.ended {
		return false, reply.ended && !reply.earlier, err
	}
	return false, true, m.endDuplicate(ctx, queuedDeadLetter(msg, job), reply.last)
}

// queuedDeadLetter describes job (msg in the jobs stream) for the
// dead-letter stream.
func queuedDeadLetter(msg *jetstream.RawStreamMsg, job *protocol.Job) deadLetter {
	return deadLetter{data: msg.Data, header: msg.Header, subject: msg.Subject, tenant: job.Tenant, id: job.ID, streamSeq: msg.Sequence}
}

// queuedJob decodes a job read from the jobs stream as a worker would; nil
// when a worker would reject it. Its tenant and ID name the reply a worker
// writes, so nothing else does (an ID header naming another request's
// reply, say).
func (m *Manager) queuedJob(msg *jetstream.RawStreamMsg) *protocol.Job {
	tenant, _, err := m.cfg.Names.ParseQueue(msg.Subject)
	if err != nil {
		return nil
	}
	job, err := protocol.DecodeJob(msg.Data, m.cfg.DefaultModel, m.cfg.Limits)
	if err != nil || job.Tenant != tenant {
		return nil
	}
	return job
}

// dropStray dead-letters and deletes a job stored on a subject no queue
// serves (chat.jobs.a.b, chat.pjobs.a.urgent: the stream takes them, no
// consumer delivers them), which would otherwise wait forever. No reply
// subject can be derived for it.
func (m *Manager) dropStray(ctx context.Context, msg *jetstream.RawStreamMsg) {
	perr := protocol.Invalid("", "published to %s, which no queue serves: want %s or %s", msg.Subject,
		m.cfg.Names.Jobs("<tenant>"), m.cfg.Names.PriorityJobs("<tenant>", "high|low"))
	m.cfg.Logger.Warn("maintenance: a job on a subject no queue serves; dead-lettered", "subject", msg.Subject, "seq", msg.Sequence)
	m.deadLetter(deadLetter{data: msg.Data, header: msg.Header, subject: msg.Subject, id: guessID(msg.Header, msg.Data),
		streamSeq: msg.Sequence, err: perr})
	if err := m.topo.Jobs.DeleteMsg(ctx, msg.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		m.cfg.Logger.Warn("maintenance: cannot delete a stray job", "seq", msg.Sequence, "err", err)
	}
}
