package manager

import (
	"context"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/subjects"
)

// unknownTenant files dead letters whose tenant cannot be told.
const unknownTenant = "_unknown"

// deadLetter describes a job being given up.
type deadLetter struct {
	data       []byte
	header     nats.Header // the job's own headers, kept
	subject    string
	tenant, id string
	streamSeq  uint64
	deliveries uint64
	err        *protocol.Error
}

// deadLetter copies a job that is given up to the dead-letter stream, for
// operators to inspect and replay. Failure is logged: the job's producer
// has been answered either way.
func (m *Manager) deadLetter(d deadLetter) {
	tenant := d.tenant
	if subjects.ValidName("tenant", tenant) != nil {
		tenant = unknownTenant
	}
	msg := nats.NewMsg(m.cfg.Names.DeadLetter(tenant))
	msg.Data = d.data
	for k, vs := range d.header {
		if k != jetstream.MsgIDHeader && k != "Nats-Expected-Stream" {
			msg.Header[k] = vs
		}
	}
	msg.Header.Set(protocol.DeadLetterReason, d.err.Message)
	msg.Header.Set(protocol.DeadLetterCode, string(d.err.Code))
	if d.err.Field != "" {
		msg.Header.Set(protocol.DeadLetterField, d.err.Field)
	}
	msg.Header.Set(protocol.DeadLetterSubject, d.subject)
	if d.tenant != "" {
		msg.Header.Set(protocol.DeadLetterTenant, d.tenant)
	}
	if d.id != "" {
		msg.Header.Set(protocol.DeadLetterRequest, d.id)
	}
	msg.Header.Set(protocol.DeadLetterStreamSeq, strconv.FormatUint(d.streamSeq, 10))
	msg.Header.Set(protocol.DeadLetterDeliveries, strconv.FormatUint(d.deliveries, 10))
	msg.Header.Set(protocol.DeadLetterWorker, m.cfg.WorkerID)
	msg.Header.Set(protocol.DeadLetterTime, time.Now().UTC().Format(time.RFC3339Nano))
	// One dead letter per job, however often this runs for it.
	msg.Header.Set(jetstream.MsgIDHeader, "dlq-"+strconv.FormatUint(d.streamSeq, 10))
	ctx, cancel := context.WithTimeout(m.hard, 5*time.Second)
	defer cancel()
	if _, err := m.js.PublishMsg(ctx, msg); err != nil {
		m.cfg.Logger.Error("dead letter not stored", "subject", d.subject, "seq", d.streamSeq, "err", err)
		return
	}
	m.countDeadLetter(ctx)
}
