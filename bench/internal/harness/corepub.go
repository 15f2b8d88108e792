package harness

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// CorePubBaseline is core NATS publish from one connection to a
// subscriber on another, as fast as the publisher goes: the rate live
// events can at most reach.
type CorePubBaseline struct {
	Msgs     int     `json:"msgs"`
	MsgBytes int     `json:"msg_bytes"`
	MsgsPerS float64 `json:"msgs_per_s"` // until the subscriber had every message
	CPU      CPU     `json:"cpu"`
}

// liveEventBytes is about the size of a live chunk event with its headers.
const liveEventBytes = 200

// corePubBaseline publishes n messages to a subscriber with no pending
// limit (a slow consumer would drop messages), and times their arrival.
func (r *runner) corePubBaseline(ctx context.Context) (*CorePubBaseline, error) {
	n := r.cfg.Sizes.JetStreamMsgs
	pubNC, err := r.connect("bench baseline core publisher", nil)
	if err != nil {
		return nil, err
	}
	defer pubNC.Close()
	subNC, err := r.connect("bench baseline core subscriber", nil)
	if err != nil {
		return nil, err
	}
	defer subNC.Close()
	subject := "benchcore." + r.runID
	var got atomic.Int64
	all := make(chan struct{})
	sub, err := subNC.Subscribe(subject, func(*nats.Msg) {
		if got.Add(1) == int64(n) {
			close(all)
		}
	})
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return nil, err
	}
	if err := subNC.Flush(); err != nil {
		return nil, err
	}
	data := bytes.Repeat([]byte{'x'}, liveEventBytes)
	m := startCPU(r.cpuGroups(nil))
	start := time.Now()
	for range n {
		if err := pubNC.Publish(subject, data); err != nil {
			return nil, err
		}
	}
	select {
	case <-all:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(2 * time.Minute):
		return nil, fmt.Errorf("received %d of %d within 2m", got.Load(), n)
	}
	wall := time.Since(start)
	return &CorePubBaseline{Msgs: n, MsgBytes: liveEventBytes, MsgsPerS: round1(float64(n) / wall.Seconds()), CPU: m.stop()}, nil
}
