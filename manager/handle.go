package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/subjects"
)

// Handle answers one pulled job with the permit Slots.Reserve gave for it,
// which Handle gives back. Handle returns once the job has been acked,
// terminated or handed back. A panic while handling it is recovered: the
// job ends with an internal error and is dead-lettered, and the worker
// lives on.
func (m *Manager) Handle(msg jetstream.Msg, permit *Permit) {
	if !m.handling.enter() {
		_ = msg.Nak() // stopping: another worker takes it
		permit.Release()
		return
	}
	defer m.handling.leave()
	if !permit.take() {
		m.cfg.Logger.Error("job handed to Handle without a permit of its own; handed back", "subject", msg.Subject())
		_ = msg.Nak()
		return
	}
	r := &request{m: m, msg: msg, permit: permit, pulled: time.Now(), log: m.cfg.Logger}
	defer r.releaseSlot()
	defer r.observeEnd()
	defer func() { r.afterPanic(recover()) }()
	m.stats.requests.Add(1)
	meta, err := msg.Metadata()
	if err != nil {
		r.log.Error("job without JetStream metadata; terminated", "subject", msg.Subject(), "err", err)
		r.term("no metadata")
		return
	}
	r.arrived, r.streamSeq, r.deliveries = meta.Timestamp, meta.Sequence.Stream, meta.NumDelivered
	r.observeBegin(meta)
	if !r.decode() {
		return
	}
	r.observeJob()
	r.log = m.cfg.Logger.With("tenant", r.job.Tenant, "request", r.job.ID)
	if m.cfg.LogPrompts {
		r.log.Info("job received (CHATFLEET_LOG_PROMPTS is on)", "model", r.job.Model, "prompt", lastMessage(r.job, 200))
	}
	ctx, cancel := context.WithCancelCause(m.life)
	defer cancel(nil)
	r.cancel = cancel
	ctx, cancelTimeout := context.WithTimeoutCause(ctx, r.timeout(), errTimeout)
	defer cancelTimeout()
	r.ctx, r.deadline = ctx, r.pulled.Add(r.timeout())
	if running := m.requests.add(r); running != nil {
		if running.streamSeq != r.streamSeq {
			// Another job under the same ID (reused after the duplicate
			// window) runs here: this one waits for its reply to end and
			// gets duplicate_id; it is not registered, so a cancel of the
			// ID reaches the running one.
			if !r.checkEarlierReply() {
				r.nak(r.m.ackWait()) // the earlier one has not begun its reply yet: look again later
			}
			return
		}
		// The same job is already running here (a redelivery while we
		// still work on it). That run acks, naks or reports progress for
		// the job; acking here could drop it if that run hands it back.
		r.log.Warn("duplicate delivery of a running request; left to the running one")
		r.settled = true
		return
	}
	defer m.requests.remove(r)

	if r.deliveries > 1 && !r.resume() {
		return
	}
	if m.cancels.has(r.reqKey) {
		r.end(protocol.Event{Type: protocol.EventCancelled})
		return
	}
	// The fleet's maintainer ends jobs still queued past their timeout;
	// this catches one pulled before it did.
	wait, limit := r.pulled.Sub(r.arrived), queueTimeout(m.topo.Config.QueueTimeout, r.job.QueueTimeoutMS)
	if r.deliveries == 1 && limit > 0 && wait > limit {
		r.endWithError(&protocol.Error{Code: protocol.CodeQueueTimeout,
			Message: fmt.Sprintf("the job waited %s in the queue; the limit is %s", wait.Round(time.Millisecond), limit)})
		return
	}
	if !r.waitWhilePaused() {
		return
	}
	if hook := m.serveHook.Load(); hook != nil {
		(*hook)(r.job)
	}
	r.serve()
}

// afterPanic turns a panic (p, from recover) in the handling of this job
// into an internal error, once: the job is dead-lettered, answered (if it
// was not), and settled.
func (r *request) afterPanic(p any) {
	if !r.m.panicked(p, "panic while handling a job; recovered", "subject", r.msg.Subject(), "seq", r.streamSeq) || r.settled {
		return
	}
	perr := &protocol.Error{Code: protocol.CodeInternal, Message: "internal error while handling the job; it was dead-lettered"}
	if r.job != nil {
		r.deadLetter(r.job.Tenant, r.job.ID, perr)
		r.endWithError(perr)
	} else {
		r.deadLetter("", "", perr)
		r.term("panic while handling the job")
	}
}

// decode validates the job. An invalid job is answered with an
// invalid_request error naming the field, when a reply subject can be
// derived, dead-lettered and terminated: it is never redelivered.
func (r *request) decode() bool {
	names := r.m.cfg.Names
	tenant, priority, err := names.ParseQueue(r.msg.Subject())
	if err != nil {
		r.reject("", "", protocol.Invalid("", "published to an invalid jobs subject"))
		return false
	}
	job, err := protocol.DecodeJob(r.msg.Data(), r.m.cfg.DefaultModel, r.m.cfg.Limits)
	if err != nil {
		var perr *protocol.Error
		errors.As(err, &perr)
		r.reject(tenant, guessID(r.msg.Headers(), r.msg.Data()), perr)
		return false
	}
	if job.Tenant != tenant {
		// The subject's tenant is the one NATS permissions let the
		// producer publish for, so the error goes to that tenant's reply.
		r.reject(tenant, job.ID, protocol.Invalid("tenant", "the job says tenant %q but was published to %s, for tenant %q; "+
			"this error is on tenant %q's reply subject %s", job.Tenant, r.msg.Subject(), tenant, tenant, names.Reply(tenant, job.ID)))
		return false
	}
	// The queue decides the priority: the publisher sends it as the
	// subject, not in the body, so a worker of a version before
	// priorities never sees one to forward upstream (see the README's
	// Upgrades). A body that says otherwise was not sent by it.
	if job.Priority != "" && job.Priority.Rank() != protocol.Priority(priority).Rank() {
		r.reject(tenant, job.ID, protocol.Invalid("priority", "the job says priority %q but was published to %s, "+
			"the %s queue; publish a job's priority as its subject (%s)", job.Priority, r.msg.Subject(), priority,
			names.PriorityJobs(tenant, string(job.Priority))))
		return false
	}
	job.Priority = protocol.Priority(priority)
	r.job = job
	r.reqKey = names.RequestKey(job.Tenant, job.ID)
	r.subject = names.ReplyWrite(job.Tenant, job.ID)
	if r.msg.Headers().Get(protocol.HeaderLive) == "1" {
		r.live, r.liveSubject, r.epoch = true, names.Reply(job.Tenant, job.ID), strconv.FormatUint(r.deliveries, 10)
		r.liveHeader = nats.Header{protocol.HeaderJobSeq: {strconv.FormatUint(r.streamSeq, 10)}, protocol.HeaderEpoch: {r.epoch}}
	}
	return true
}

// guessID finds the request ID of a job that may not decode: the
// Nats-Msg-Id header the publisher sets (<tenant>.<id>, or the bare ID
// of older publishers), or an "id" field.
func guessID(h nats.Header, data []byte) string {
	if id := protocol.IDFromMsgID(h.Get(jetstream.MsgIDHeader)); subjects.ValidName("id", id) == nil {
		return id
	}
	var partial struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(data, &partial) == nil && subjects.ValidName("id", partial.ID) == nil {
		return partial.ID
	}
	return ""
}

// lastMessage is the job's last message text, cut to n bytes: what
// LogPrompts logs.
func lastMessage(j *protocol.Job, n int) string {
	text := j.Messages[len(j.Messages)-1].Content.Text
	if len(text) > n {
		text = text[:n] + "…"
	}
	return text
}

// reject dead-letters an invalid job, answers it (when its reply subject
// is known) and terminates it. The dead letter is written first, so a
// producer that sees the error finds the dead letter already there.
func (r *request) reject(tenant, id string, perr *protocol.Error) {
	r.m.countEnding(protocol.EventError, perr.Code, 1)
	r.outcome, r.code = string(protocol.EventError), perr.Code
	r.m.cfg.Logger.Warn("invalid job terminated", "subject", r.msg.Subject(), "tenant", tenant, "request", id,
		"field", perr.Field, "reason", perr.Message)
	r.deadLetter(tenant, id, perr)
	if tenant != "" && id != "" {
		// The first event of the reply, stored only if the reply is empty:
		// a job that reuses another request's ID must not end its reply.
		ev := protocol.Event{V: protocol.Version, ID: id, Seq: 1, Type: protocol.EventError, Error: perr}
		if b, err := ev.Marshal(); err == nil {
			ctx, cancel := context.WithTimeout(r.m.hard, r.m.ackWait()/4)
			_, err = r.m.js.PublishMsg(ctx, replyMsg(r.m.cfg.Names.ReplyWrite(tenant, id), r.streamSeq, 0, 1, b),
				jetstream.WithExpectLastSequencePerSubject(0))
			cancel()
			if err != nil {
				r.m.cfg.Logger.Warn("error event of an invalid job not stored", "tenant", tenant, "request", id, "err", err)
			}
		}
	}
	r.term(fmt.Sprintf("invalid job: %s", perr.Error()))
}

// deadLetter copies this request's job to the dead-letter stream, under
// its tenant and request ID as far as they are known.
func (r *request) deadLetter(tenant, id string, perr *protocol.Error) {
	d := r.deadLetterOf(tenant, id)
	d.err = perr
	r.m.deadLetter(d)
}

// deadLetterOf describes this request's job for the dead-letter stream.
func (r *request) deadLetterOf(tenant, id string) deadLetter {
	return deadLetter{data: r.msg.Data(), header: r.msg.Headers(), subject: r.msg.Subject(),
		tenant: tenant, id: id, streamSeq: r.streamSeq, deliveries: r.deliveries}
}

// releaseSlot gives back whatever slot the request holds.
func (r *request) releaseSlot() { r.permit.release() }
