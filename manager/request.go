package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/chatfleet/chatfleet/protocol"
)

// request is one job being answered on this worker. Only its own goroutine
// publishes its events, so its sequence numbers are strictly increasing
// and it ends with exactly one terminal event (or is handed back).
type request struct {
	m       *Manager
	msg     jetstream.Msg
	job     *protocol.Job
	reqKey  string // tenant.id
	subject string // where its reply is written (the stream republishes it on the reply subject)
	log     *slog.Logger

	ctx    context.Context
	cancel context.CancelCauseFunc

	permit     *Permit   // the slot it holds
	streamSeq  uint64    // the job's sequence in the jobs stream
	deliveries uint64    // how often it has been delivered, this time included
	arrived    time.Time // stored in the jobs stream
	pulled     time.Time
	deadline   time.Time // pulled + processing timeout
	settled    bool      // acked, nacked or terminated
	firstChunk time.Time
	seq        uint64 // last numbered (for a live job it may be live and not yet stored)
	storedSeq  uint64 // last stored
	lastStored uint64 // its sequence in the replies stream: what the next event expects
	// Live events (live.go): the producer asked for them (HeaderLive).
	live        bool
	liveSubject string         // the reply subject
	epoch       string         // protocol.HeaderEpoch: the delivery number
	liveHeader  nats.Header    // of every live event: the job's sequence and the epoch
	unstored    unstoredEvents // shown live, not yet sent to be stored
	copy        *storedCopy    // the batch sent to be stored, not yet confirmed
	flushTimer  *time.Timer    // sends unstored when StoreBatchDelay has passed
	flushArmed  bool
	chunks      int    // chunks published since the last reset
	stage       string // the last stage the hub reported (progress events)
	reason      string // and why it waits, for a waiting stage

	// For metrics and traces (observe.go).
	role      protocol.Role // "" while routing
	outcome   string        // done, error, cancelled, handed_back or superseded, once settled
	code      protocol.Code // of an error outcome
	usage     *protocol.Usage
	traceCtx  context.Context // carries the job's span
	span      trace.Span
	relaySpan trace.Span
}

// endByContext ends a request whose context is done: cancelled, timed out,
// or handed back to the queue when the worker shuts down.
func (r *request) endByContext() { r.endByCause(context.Cause(r.ctx)) }

// endByCause ends a request whose context is done with cause (or is about
// to be: see orphaned).
func (r *request) endByCause(cause error) {
	switch {
	case errors.Is(cause, errShutdown):
		// Another worker takes it at once and resumes from the replies
		// stream; no terminal event here.
		r.nak(0)
	case errors.Is(cause, errCancelled):
		r.end(protocol.Event{Type: protocol.EventCancelled})
	default:
		r.endWithError(&protocol.Error{Code: protocol.CodeTimeout, Message: fmt.Sprintf("request exceeded its processing timeout of %s", r.timeout())})
	}
}

// timeout is the request's processing timeout: the worker's, or the job's
// own when shorter.
func (r *request) timeout() time.Duration {
	d := r.m.cfg.ProcessingTimeout
	if t := time.Duration(r.job.TimeoutMS) * time.Millisecond; t > 0 && t < d {
		d = t
	}
	return d
}

// ack, nak and term settle the job once; the panic handler looks at
// settled (a job answered before a panic is not answered again).
func (r *request) ack() {
	r.settled = true
	_ = r.msg.Ack()
}

// nak hands the job back, to be redelivered after delay (0: at once).
func (r *request) nak(delay time.Duration) {
	r.settled = true
	if r.outcome == "" {
		r.outcome = "handed_back"
	}
	if delay > 0 {
		_ = r.msg.NakWithDelay(delay)
	} else {
		_ = r.msg.Nak()
	}
}

func (r *request) term(reason string) {
	r.settled = true
	if r.outcome == "" {
		r.outcome = string(protocol.EventError)
	}
	_ = r.msg.TermWithReason(reason)
}

// progress tells JetStream the job is alive, so AckWait can stay short.
func (r *request) progress() {
	_ = r.msg.InProgress()
}

// progressEvery is how often a waiting request reports progress.
func (r *request) progressEvery() time.Duration { return r.m.ackWait() / 3 }

func ms(d time.Duration) float64 {
	if d < 0 {
		return 0 // clocks of the server and this worker disagree
	}
	return float64(d.Microseconds()) / 1000
}
