package manager

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/protocol"
)

// A leader mirrors its generation to <prefix>.gen.<tenant>.<generation ID>
// once a follower hub on another worker joins (control.go): the history
// first, then every entry as it is appended, the end with a JetStream ack.
// Followers read that subject from the replies stream (follow.go).

// startMirroring registers follower (a hub on another worker) as reading
// genID, publishes the generation's history to its generation subject and
// keeps mirroring from then on. It is idempotent per follower, and false
// when genID is not the generation this worker leads now.
func (h *hub) startMirroring(genID, follower string) bool {
	if !h.leads(genID) {
		return false // quick refusal without waiting for pubMu
	}
	h.pubMu.Lock()
	defer h.pubMu.Unlock()
	h.mu.Lock()
	if !h.leadsLocked(genID) {
		h.mu.Unlock()
		return false
	}
	h.remote[follower] = struct{}{}
	if h.mirror {
		h.mu.Unlock()
		return true
	}
	h.mirror = true
	history := h.log.entries[h.log.base:]
	events := make([]protocol.Event, 0, len(history))
	for _, e := range history {
		if e.kind == entryReset {
			continue
		}
		h.mirrored++
		events = append(events, e.event(h.genID, h.mirrored))
	}
	subject := h.m.cfg.Names.Gen(h.job.Tenant, h.genID)
	h.mu.Unlock()
	for i := range events {
		h.m.publishGenEvent(subject, &events[i], false)
	}
	return true
}

func (h *hub) leads(genID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.leadsLocked(genID)
}

func (h *hub) leadsLocked(genID string) bool {
	return !h.ended && !h.unwanted && h.mode == modeLeader && h.genID == genID
}

// publishAcked publishes with a JetStream ack, retrying a few times. The
// message ID makes a retry of an event that was stored (but whose ack was
// lost) a no-op.
func (m *Manager) publishAcked(subject string, seq uint64, data []byte) error {
	msg := genEventMsg(subject, seq, data)
	var err error
	for attempt := range 3 {
		if attempt > 0 && !m.pause(time.Duration(attempt)*100*time.Millisecond) {
			return err
		}
		ctx, cancel := context.WithTimeout(m.hard, m.ackWait()/4)
		_, err = m.js.PublishMsg(ctx, msg)
		cancel()
		if err == nil || errors.Is(err, nats.ErrConnectionClosed) {
			return err
		}
	}
	return err
}

// genEventMsg is event number seq of a generation subject, with a
// message ID that makes JetStream drop a second copy of it.
func genEventMsg(subject string, seq uint64, data []byte) *nats.Msg {
	msg := nats.NewMsg(subject)
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, subject+":"+strconv.FormatUint(seq, 10))
	return msg
}

// publishGenEvent mirrors a generation event for remote followers; acked
// when it ends the generation.
func (m *Manager) publishGenEvent(subject string, ev *protocol.Event, acked bool) {
	b, err := ev.Marshal()
	if err != nil {
		return
	}
	if acked {
		err = m.publishAcked(subject, ev.Seq, b)
	} else {
		err = m.nc.Publish(subject, b)
	}
	if err != nil {
		m.cfg.Logger.Warn("generation event not published", "subject", subject, "type", ev.Type, "err", err)
	}
}
