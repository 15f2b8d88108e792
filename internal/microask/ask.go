// Package microask asks every instance of a NATS micro service one
// question ($SRV.PING, $SRV.INFO, ...) and collects the answers.
package microask

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Ask sends verb to every instance of service and returns the answers
// that arrive within wait (or until ctx ends); accept, when set, keeps
// only the answers it accepts, and Ask returns at the first of those when
// first is set.
func Ask(ctx context.Context, nc *nats.Conn, verb micro.Verb, service string, wait time.Duration, first bool, accept func(*nats.Msg) bool) []*nats.Msg {
	subject, err := micro.ControlSubject(verb, service, "")
	if err != nil {
		return nil
	}
	inbox := nc.NewInbox()
	// A sync subscription queues up to the connection's SubChanLen answers
	// (65536 by default); a small channel of our own would drop a large
	// fleet's answers arriving while accept is busy with the first ones.
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(subject, inbox, nil); err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var out []*nats.Msg
	for {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return out
		}
		if accept != nil && !accept(msg) {
			continue
		}
		out = append(out, msg)
		if first {
			return out
		}
	}
}
