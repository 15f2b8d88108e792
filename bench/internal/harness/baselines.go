package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Baselines are raw NATS on the same server, measured with nats.go.
type Baselines struct {
	JetStream *JetStreamBaseline `json:"jetstream,omitempty"`
	CorePub   *CorePubBaseline   `json:"core_publish,omitempty"`
	ReqReply  *ReqReplyBaseline  `json:"request_reply,omitempty"`
}

// JetStreamBaseline is async publish of Msgs messages to a file-backed
// work-queue stream while a pull consumer consumes and acks them.
type JetStreamBaseline struct {
	Msgs            int     `json:"msgs"`
	MsgBytes        int     `json:"msg_bytes"`
	PublishMsgsPerS float64 `json:"publish_msgs_per_s"` // until every publish was acked
	MsgsPerS        float64 `json:"msgs_per_s"`         // until every message was consumed and acked
	CPU             CPU     `json:"cpu"`
}

// ReqReplyBaseline is core NATS request/reply, one at a time.
type ReqReplyBaseline struct {
	N       int  `json:"n"`
	Latency Dist `json:"latency"`
}

// baselines measures the same NATS server with nats.go alone: what any
// system built on it can at most do.
func (r *runner) baselines(ctx context.Context) error {
	r.rep.Baselines = &Baselines{}
	js, err := r.jetStreamBaseline(ctx)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	r.rep.Baselines.JetStream = js
	r.progress("   JetStream async publish + pull consume: %.0f msgs/s (publish alone %.0f msgs/s)", js.MsgsPerS, js.PublishMsgsPerS)
	cp, err := r.corePubBaseline(ctx)
	if err != nil {
		return fmt.Errorf("core publish: %w", err)
	}
	r.rep.Baselines.CorePub = cp
	r.progress("   core publish to a subscriber: %.0f msgs/s", cp.MsgsPerS)
	rr, err := r.reqReplyBaseline(ctx)
	if err != nil {
		return fmt.Errorf("request/reply: %w", err)
	}
	r.rep.Baselines.ReqReply = rr
	r.progress("   core request/reply: p50 %.3f ms p99 %.3f ms", rr.Latency.P50, rr.Latency.P99)
	return nil
}

// baselineMsgBytes is about the size of a chatfleet job.
const baselineMsgBytes = 300

// jetStreamBaseline publishes Msgs messages asynchronously to a
// file-backed work-queue stream (like chatfleet's jobs stream) while a
// pull consumer on another connection consumes and acks each.
func (r *runner) jetStreamBaseline(ctx context.Context) (*JetStreamBaseline, error) {
	n := r.cfg.Sizes.JetStreamMsgs
	pubNC, err := r.connect("bench baseline publisher", nil)
	if err != nil {
		return nil, err
	}
	defer pubNC.Close()
	subNC, err := r.connect("bench baseline consumer", nil)
	if err != nil {
		return nil, err
	}
	defer subNC.Close()
	js, err := jetstream.New(pubNC, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return nil, err
	}
	subJS, err := jetstream.New(subNC)
	if err != nil {
		return nil, err
	}
	name := "BENCH_RAW_" + r.runID
	subject := "benchraw." + r.runID
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: name, Subjects: []string{subject}, Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
	}); err != nil {
		return nil, err
	}
	defer func() { _ = js.DeleteStream(context.Background(), name) }()
	cons, err := subJS.CreateOrUpdateConsumer(ctx, name, jetstream.ConsumerConfig{
		Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 20000,
	})
	if err != nil {
		return nil, err
	}
	return r.measureJetStream(ctx, js, cons, subject, n)
}

// measureJetStream publishes n messages to subject asynchronously with js
// while cons consumes and acks them, and times both.
func (r *runner) measureJetStream(ctx context.Context, js jetstream.JetStream, cons jetstream.Consumer, subject string, n int) (*JetStreamBaseline, error) {
	var consumed atomic.Int64
	all := make(chan struct{})
	m := startCPU(r.cpuGroups(nil))
	start := time.Now()
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		_ = msg.Ack()
		if consumed.Add(1) == int64(n) {
			close(all)
		}
	}, jetstream.PullMaxMessages(1000))
	if err != nil {
		return nil, err
	}
	defer cc.Stop()

	data := bytes.Repeat([]byte{'x'}, baselineMsgBytes)
	for range n {
		if _, err := js.PublishAsync(subject, data); err != nil {
			return nil, err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(2 * time.Minute):
		return nil, errors.New("publishes not acked within 2m")
	}
	published := time.Since(start)
	select {
	case <-all:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(2 * time.Minute):
		return nil, fmt.Errorf("consumed %d of %d within 2m", consumed.Load(), n)
	}
	wall := time.Since(start)
	cpu := m.stop()
	return &JetStreamBaseline{
		Msgs: n, MsgBytes: baselineMsgBytes,
		PublishMsgsPerS: round1(float64(n) / published.Seconds()),
		MsgsPerS:        round1(float64(n) / wall.Seconds()),
		CPU:             cpu,
	}, nil
}

// reqReplyBaseline measures core NATS request/reply round trips, one at a
// time, between two connections.
func (r *runner) reqReplyBaseline(ctx context.Context) (*ReqReplyBaseline, error) {
	n := r.cfg.Sizes.ReqReplyN
	srvNC, err := r.connect("bench baseline responder", nil)
	if err != nil {
		return nil, err
	}
	defer srvNC.Close()
	cliNC, err := r.connect("bench baseline requester", nil)
	if err != nil {
		return nil, err
	}
	defer cliNC.Close()
	subject := "benchrr." + r.runID
	sub, err := srvNC.Subscribe(subject, func(m *nats.Msg) { _ = m.Respond(m.Data) })
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := srvNC.Flush(); err != nil {
		return nil, err
	}
	payload := make([]byte, 64)
	for range 100 { // warm-up
		if _, err := cliNC.Request(subject, payload, 5*time.Second); err != nil {
			return nil, err
		}
	}
	lat := make([]time.Duration, 0, n)
	for range n {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		t := time.Now()
		if _, err := cliNC.Request(subject, payload, 5*time.Second); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(t))
	}
	return &ReqReplyBaseline{N: n, Latency: summarize(lat)}, nil
}
