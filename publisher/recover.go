package publisher

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/protocol"
)

// readLive waits on the live subscription. After a quiet spell it asks the
// stream whether events went out that it did not see (lost during a
// reconnect, or dropped for a slow reader). Only when two checks in a row
// find such events, with nothing arriving live between them, does it set
// fromStream and return nil: a busy client may just be behind on delivery,
// and every switch costs the server a consumer. The quiet spell starts at
// the idle probe interval and doubles, with jitter, up to maxProbe, so a
// thousand replies waiting on a slow generation do not flood the server.
func (r *Reply) readLive(ctx context.Context) (*nats.Msg, error) {
	for {
		if r.timer == nil {
			r.timer = time.NewTimer(jitter(r.probe))
		} else {
			r.timer.Reset(jitter(r.probe))
		}
		select {
		case msg, ok := <-r.liveCh:
			if !ok {
				return nil, nats.ErrConnectionClosed
			}
			r.probe, r.suspect = r.p.opts.idleProbe, false
			return msg, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-r.timer.C:
		}
		switch missed := r.missedEvents(ctx); {
		case missed && r.suspect:
			r.fromStream = true
			return nil, nil
		case missed:
			r.suspect = true // look again after the same spell
		default:
			r.suspect = false
			r.probe = min(2*r.probe, maxProbe)
		}
	}
}

// maxProbe is the longest quiet spell before a reply checks the stream.
const maxProbe = 30 * time.Second

// jitter spreads d by ±20%.
func jitter(d time.Duration) time.Duration {
	return d*4/5 + rand.N(d*2/5+1)
}

// missedEvents reports whether the stream holds an event at or beyond the
// one expected next, or an end we never got: a live reply's takeover may
// end below the seq its predecessor showed live.
func (r *Reply) missedEvents(ctx context.Context) bool {
	data, found, err := r.p.lastStored(ctx, r.storedSubject)
	if !found || err != nil {
		return false
	}
	ev, err := protocol.DecodeEvent(data)
	return err == nil && (ev.Seq >= r.next || ev.Type.Terminal())
}

// openStream switches to an ordered consumer over the reply subject from
// its first event.
func (r *Reply) openStream(ctx context.Context) error {
	if r.live != nil {
		_ = r.live.Unsubscribe()
		r.live = nil
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	cons, err := r.p.js.OrderedConsumer(ctx, r.p.names.RepliesStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{r.storedSubject},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("publisher: read replies stream: %w", err)
	}
	// A 1s heartbeat: a consumer lost with its node is noticed (and
	// recreated by the ordered consumer) in about 2s, not 10.
	it, err := cons.Messages(jetstream.PullExpiry(5*time.Second), jetstream.PullHeartbeat(time.Second))
	if err != nil {
		return fmt.Errorf("publisher: read replies stream: %w", err)
	}
	r.stored = it
	return nil
}
