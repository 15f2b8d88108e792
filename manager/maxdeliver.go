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
// group) dead-letters the job, ends its reply with an error, and deletes
// it from the queue.

func (m *Manager) maxDeliveriesSubject() string {
	return fmt.Sprintf("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.%s",
		m.cfg.Names.JobsStream(), m.cfg.Names.WorkersConsumer())
}

// maxDeliveries is the advisory's payload (io.nats.jetstream.advisory.v1.max_deliver).
type maxDeliveries struct {
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

func (m *Manager) handleMaxDeliveries(msg *nats.Msg) {
	var adv maxDeliveries
	if err := json.Unmarshal(msg.Data, &adv); err != nil || adv.StreamSeq == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(m.life, 10*time.Second)
	defer cancel()
	job, err := m.top.Jobs.GetMsg(ctx, adv.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return // acked or removed meanwhile
	}
	if err != nil {
		m.cfg.Logger.Error("cannot read a job that exhausted its deliveries", "seq", adv.StreamSeq, "err", err)
		return
	}
	tenant, _ := m.cfg.Names.ParseJobs(job.Subject)
	id := guessID(job.Header, job.Data)
	perr := &protocol.Error{Code: protocol.CodeInternal,
		Message: fmt.Sprintf("gave up after %d deliveries without an answer; the job was dead-lettered", adv.Deliveries)}
	m.cfg.Logger.Error("job exhausted its deliveries; dead-lettered", "tenant", tenant, "request", id,
		"seq", adv.StreamSeq, "deliveries", adv.Deliveries)
	m.deadLetter(deadLetter{data: job.Data, header: job.Header, subject: job.Subject,
		tenant: tenant, id: id, streamSeq: adv.StreamSeq, deliveries: adv.Deliveries, err: perr})
	if tenant != "" && id != "" {
		m.endAbandonedReply(ctx, tenant, id, perr)
	}
	m.metrics.jobs.Add(ctx, 1, jobSet(string(protocol.EventError), "none", string(perr.Code)))
	if err := m.top.Jobs.DeleteMsg(ctx, adv.StreamSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		m.cfg.Logger.Error("cannot delete a dead-lettered job from the queue", "seq", adv.StreamSeq, "err", err)
	}
}

// endAbandonedReply gives a reply that no worker will finish its terminal
// error event, continuing its sequence, unless it already ended. The
// event is stored only if nothing was stored after what was read.
func (m *Manager) endAbandonedReply(ctx context.Context, tenant, id string, perr *protocol.Error) {
	subject := m.cfg.Names.ReplyWrite(tenant, id)
	for range 3 {
		var seq, lastSeq uint64
		last, err := m.top.Replies.GetLastMsgForSubject(ctx, subject)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			m.cfg.Logger.Error("cannot read an abandoned reply", "tenant", tenant, "request", id, "err", err)
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
		if _, err := m.js.Publish(ctx, subject, b, jetstream.WithExpectLastSequencePerSubject(lastSeq)); err == nil {
			m.stats.errors.Add(1)
			return
		}
	}
}
