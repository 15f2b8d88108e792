package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/protocol"
)

// A job delivered MaxDeliver times without an ack (a worker crash loop,
// say) is never delivered again, but a work-queue stream keeps it. The
// server announces it with an advisory; one worker of the fleet (a queue
// group) gives the job up: it dead-letters it, ends its reply with an
// error, and deletes it from the queue.
//
// Any client allowed to publish on $JS.EVENT.> can forge that advisory, so
// its payload only says which job to look at; the deliveries it claims are
// ignored. A job is given up only if this worker does not run it with
// fewer than MaxDeliver deliveries, and only when the server's state shows
// the consumer gave up on it (gaveUp): delivered, still in the stream, yet
// not pending. A job that runs anywhere in the fleet, or waits for a
// redelivery, is pending. The maintainer also looks for such jobs on
// every scan (sweepExhausted), which catches an advisory nobody heard, and
// one the server's state could not confirm yet.

// maxDeliveriesSubject matches the advisories of every consumer of the
// jobs stream: there is one per tenant and priority.
func (m *Manager) maxDeliveriesSubject() string {
	return fmt.Sprintf("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.*", m.cfg.Names.JobsStream())
}

// maxDeliveries is the part of the advisory's payload we read
// (io.nats.jetstream.advisory.v1.max_deliver).
type maxDeliveries struct {
	StreamSeq uint64 `json:"stream_seq"`
}

func (m *Manager) handleMaxDeliveries(msg *nats.Msg) {
	var adv maxDeliveries
	if err := json.Unmarshal(msg.Data, &adv); err != nil || adv.StreamSeq == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(m.life, 10*time.Second)
	defer cancel()
	acted := m.checkMaxDeliveries(ctx, adv.StreamSeq)
	m.maint.hook().advisory(adv.StreamSeq, acted)
}

// checkMaxDeliveries gives up the job at seq if the server confirms the
// consumer of its queue gave up on it; it reports whether it did. The
// consumer is the one the job's subject names, not the advisory's.
func (m *Manager) checkMaxDeliveries(ctx context.Context, seq uint64) bool {
	job, err := m.topo.Jobs.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false // acked or removed meanwhile
	}
	if err != nil {
		m.cfg.Logger.Error("cannot check a max-deliveries advisory", "seq", seq, "err", err)
		return false
	}
	name, ok := m.topo.QueueOf(job.Subject)
	if !ok {
		return false // no queue's: no consumer delivered it
	}
	var info *jetstream.ConsumerInfo
	c, err := m.topo.Jobs.Consumer(ctx, name)
	if err == nil {
		info, err = c.Info(ctx)
	}
	if err != nil {
		m.cfg.Logger.Error("cannot check a max-deliveries advisory", "seq", seq, "err", err)
		return false
	}
	if n, ok := m.runningHere(seq); ok && n < uint64(info.Config.MaxDeliver) {
		m.cfg.Logger.Warn("max-deliveries advisory for a job running here; ignored (forged?)", "seq", seq, "deliveries", n)
		return false
	}
	if !gaveUp(seq, info) {
		m.cfg.Logger.Warn("max-deliveries advisory the consumer's state does not confirm; ignored (forged, or the job "+
			"is given up once the consumer's ack floor passes it)", "seq", seq, "ack_floor", info.AckFloor.Stream)
		return false
	}
	return m.giveUp(ctx, seq, info.Config.MaxDeliver)
}

// gaveUp reports whether the consumer's state shows it gave up on the job
// at stream sequence seq, which is still in the stream. A work-queue
// stream deletes a job once it is acked (or terminated), so a job still
// there that was delivered (seq ≤ the delivered sequence) and is not
// pending is one the consumer neither waits for nor will deliver again:
// it exhausted its deliveries. The server does not say which jobs are
// pending, only how many, and the ack floor, below which none is: so a
// job is known not to be pending when it is at or below the ack floor, or
// when nothing is pending at all. A job given up while older jobs are
// still pending is confirmed once the ack floor passes it. The consumer
// also keeps a delivery count for such a job, which NumRedelivered counts.
func gaveUp(seq uint64, info *jetstream.ConsumerInfo) bool {
	return info.Config.MaxDeliver > 0 && info.NumRedelivered > 0 && seq <= info.Delivered.Stream &&
		(seq <= info.AckFloor.Stream || info.NumAckPending == 0)
}

// runningHere reports how often the job at stream sequence seq has been
// delivered, if this worker runs it.
func (m *Manager) runningHere(seq uint64) (deliveries uint64, ok bool) {
	m.requests.mu.RLock()
	defer m.requests.mu.RUnlock()
	for _, r := range m.requests.active {
		if r.streamSeq == seq {
			return r.deliveries, true
		}
	}
	return 0, false
}

// sweepExhausted gives up the jobs the queues' consumers gave up on, for
// the maintainer: every job for which gaveUp holds.
// It acts on a job only at the second scan in a row that finds it there,
// so a job whose ack the server is still applying is never taken for one;
// seen is what the last scan found, and it returns what this one found.
func (m *Manager) sweepExhausted(ctx context.Context, qs queueState, seen map[uint64]bool) map[uint64]bool {
	found := map[uint64]bool{}
	for _, info := range qs.byName {
		if !m.sweepConsumer(ctx, info, seen, found) {
			for seq := range seen { // try again next scan
				found[seq] = true
			}
		}
	}
	return found
}

// sweepConsumer is sweepExhausted for one consumer; found gains what it
// found. It reports false when it could not read the jobs.
func (m *Manager) sweepConsumer(ctx context.Context, info *jetstream.ConsumerInfo, seen, found map[uint64]bool) bool {
	bound := info.AckFloor.Stream // the last job that may be one
	if info.NumAckPending == 0 {
		bound = info.Delivered.Stream
	}
	if info.Config.MaxDeliver <= 0 || info.NumRedelivered == 0 || bound == 0 {
		return true
	}
	for seq := uint64(1); ; {
		job, err := m.topo.Jobs.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(info.Config.FilterSubject))
		if err != nil || job.Sequence > bound {
			return err == nil || errors.Is(err, jetstream.ErrMsgNotFound)
		}
		seq = job.Sequence + 1
		switch {
		case !gaveUp(job.Sequence, info):
		case seen[job.Sequence]:
			m.giveUp(ctx, job.Sequence, info.Config.MaxDeliver)
		default:
			found[job.Sequence] = true
		}
	}
}

// giveUp dead-letters the job at seq, which the consumer gave up on, ends
// its reply with an error (unless it already ended: then the job was
// answered, and is only removed), and deletes it from the queue. It
// reports whether the job was still there. The advisory handler and the
// maintainer may come to the same job at once: they take turns.
func (m *Manager) giveUp(ctx context.Context, seq uint64, deliveries int) bool {
	m.givingUp.Lock()
	defer m.givingUp.Unlock()
	job, err := m.topo.Jobs.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false // acked or removed meanwhile
	}
	if err != nil {
		m.cfg.Logger.Error("cannot read a job that exhausted its deliveries", "seq", seq, "err", err)
		return false
	}
	tenant, _, _ := m.cfg.Names.ParseQueue(job.Subject)
	id := guessID(job.Header, job.Data) // labels the dead letter; the reply is the decoded job's
	queued := m.queuedJob(job)
	if queued != nil {
		reply, err := m.readReply(ctx, m.cfg.Names.ReplyWrite(queued.Tenant, queued.ID), seq, job.Time)
		if err != nil {
			m.cfg.Logger.Error("cannot read the reply of a job that exhausted its deliveries", "seq", seq, "err", err)
			return false
		}
		switch {
		case reply.earlier:
			// It reused an earlier request's ID: a duplicate_id error
			// follows that reply once it ended; while it runs, there is
			// nowhere to store one.
			d := queuedDeadLetter(job, queued)
			d.deliveries = uint64(deliveries)
			m.cfg.Logger.Warn("job with a duplicate request ID exhausted its deliveries; dead-lettered", "tenant", queued.Tenant,
				"request", queued.ID, "seq", seq)
			if reply.ended {
				if err := m.endDuplicate(ctx, d, reply.last); err != nil {
					m.cfg.Logger.Warn("duplicate_id error not stored", "seq", seq, "err", err)
				}
			} else {
				d.err = &protocol.Error{Code: protocol.CodeDuplicateID, Message: "request ID " + queued.ID + " is in use by another request"}
				m.deadLetter(d)
			}
			m.deleteJob(ctx, seq)
			return true
		case reply.ended:
			m.cfg.Logger.Warn("job answered but never acked; removed from the queue", "tenant", queued.Tenant,
				"request", queued.ID, "seq", seq)
			m.deleteJob(ctx, seq)
			return true
		}
	}
	perr := &protocol.Error{Code: protocol.CodeInternal,
		Message: fmt.Sprintf("gave up after %d deliveries without an answer; the job was dead-lettered", deliveries)}
	m.cfg.Logger.Error("job exhausted its deliveries; dead-lettered", "tenant", tenant, "request", id,
		"seq", seq, "deliveries", deliveries)
	m.deadLetter(deadLetter{data: job.Data, header: job.Header, subject: job.Subject,
		tenant: tenant, id: id, streamSeq: seq, deliveries: uint64(deliveries), err: perr})
	if queued != nil {
		m.endGivenUpReply(ctx, queued.Tenant, queued.ID, seq, perr)
	}
	m.metrics.jobs.Add(ctx, 1, jobSet(string(protocol.EventError), "none", string(perr.Code)))
	m.deleteJob(ctx, seq)
	return true
}

func (m *Manager) deleteJob(ctx context.Context, seq uint64) {
	if err := m.topo.Jobs.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		m.cfg.Logger.Error("cannot delete a given-up job from the queue", "seq", seq, "err", err)
	}
}

// endGivenUpReply gives a reply that no worker will finish its terminal
// error event, continuing its sequence, unless it already ended. The
// event is stored only if nothing was stored after what was read.
func (m *Manager) endGivenUpReply(ctx context.Context, tenant, id string, jobSeq uint64, perr *protocol.Error) {
	subject := m.cfg.Names.ReplyWrite(tenant, id)
	for range 3 {
		var seq, lastSeq uint64
		last, err := m.topo.Replies.GetLastMsgForSubject(ctx, subject)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			m.cfg.Logger.Error("cannot read the reply of a given-up job", "tenant", tenant, "request", id, "err", err)
			return
		default:
			ev, err := protocol.DecodeEvent(last.Data)
			if err != nil || ev.Type.Terminal() {
				return // ended, or not ours to continue
			}
			seq, lastSeq = ev.Seq, last.Sequence
		}
		ev := protocol.Event{V: protocol.Version, ID: id, Seq: seq + 1, Type: protocol.EventError, Error: perr}
		b, _ := ev.Marshal()
		m.countEnding(protocol.EventError, perr.Code, 1) // before the producer can hear of it
		if _, err := m.js.PublishMsg(ctx, replyMsg(subject, jobSeq, 0, ev.Seq, b), jetstream.WithExpectLastSequencePerSubject(lastSeq)); err == nil {
			return
		}
		m.countEnding(protocol.EventError, perr.Code, -1)
	}
}
