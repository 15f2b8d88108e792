package manager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/protocol"
)

// lead generates the answer: take an upstream slot, stream from the
// upstream into the log, then cache the answer, append the end, and only
// then release the lease, so a request arriving at any moment finds either
// the live generation or the cached answer. l is nil when dedupe is off.
func (g *generation) lead(l *lease, genID string) next {
	attempt, ok := g.newAttempt(modeLead, genID, trace.SpanContextFromContext(g.traceCtx))
	if !ok {
		if l != nil {
			g.releaseLease(l)
		}
		return ended
	}
	g.m.setLeading(genID, g)
	defer g.m.setLeading(genID, nil)
	g.m.stats.leading.Add(1)
	defer g.m.stats.leading.Add(-1)

	ctx, cancelLead := context.WithCancelCause(g.ctx)
	defer cancelLead(nil)
	if l != nil {
		// The keeper renews until release, through the cache write and the
		// end's publication, so the lease cannot lapse while we finish.
		l.keep(func() { cancelLead(errLeaseLost) })
		defer l.stopKeeping()
	}
	ctx, cancelTimeout := context.WithTimeoutCause(ctx, g.m.cfg.ProcessingTimeout, errTimeout)
	defer cancelTimeout()

	res, err := g.generate(ctx, attempt)
	for retry := 0; err != nil && retry < g.m.cfg.MidStreamRetries && ctx.Err() == nil; retry++ {
		var broke *midStreamError
		if !errors.As(err, &broke) || !restartable(broke.err) {
			break
		}
		// The stream broke after partial output: everyone discards it
		// (reset) and the answer starts again.
		g.m.cfg.Logger.Warn("upstream stream broke mid-answer; starting it again", "key", g.key, "err", broke.err)
		g.appendEntry(attempt, entry{kind: entryReset})
		res, err = g.generate(ctx, attempt)
	}
	var broke *midStreamError
	if errors.As(err, &broke) {
		err = broke.err
	}
	if err == nil && l != nil && l.isLost() {
		err = errLeaseLost // fenced just as the stream ended: not ours to publish
	}
	cause := context.Cause(ctx)
	switch {
	case err == nil:
		if u := res.usage; u != nil {
			g.m.metrics.tokens.Add(g.traceCtx, int64(u.PromptTokens), promptTokens)
			g.m.metrics.tokens.Add(g.traceCtx, int64(u.CompletionTokens), completionTokens)
		}
		if g.useCache {
			g.cacheAnswer(attempt, res)
		}
		g.appendEntry(attempt, entry{kind: entryEnd, end: &ending{typ: protocol.EventDone, finishReason: res.finishReason, usage: res.usage,
			slotWait: res.slotWait, upstreamTTFT: res.firstToken}})
	case errors.Is(err, errLeaseLost), errors.Is(cause, errLeaseLost):
		// Fenced: someone else leads now. Publish nothing more; route again.
		g.m.stats.leasesLost.Add(1)
		g.m.metrics.leasesLost.Add(g.traceCtx, 1)
		g.m.cfg.Logger.Warn("leader lease lost; routing again", "key", g.key, "gen", genID)
		return again
	default:
		if tooLarge := (*answerTooLargeError)(nil); errors.As(err, &tooLarge) {
			g.m.cfg.Logger.Warn("answer too large; upstream request cancelled", "tenant", g.job.Tenant, "request", g.job.ID,
				"key", g.key, "limit", tooLarge.limit)
		}
		if lerr := (*llm.Error)(nil); errors.As(err, &lerr) && ctx.Err() == nil {
			g.m.metrics.upstreamErrors.Add(g.traceCtx, 1, attrs(attribute.String("code", string(lerr.Code))))
			// Not the upstream's message: it may quote the request.
			g.m.cfg.Logger.Warn("upstream failed", "tenant", g.job.Tenant, "request", g.job.ID, "key", g.key,
				"code", lerr.Code, "status", lerr.Status)
		}
		g.endByContext(ctx, err)
	}
	if l != nil {
		g.releaseLease(l)
	}
	return ended
}

// midStreamError is an upstream failure after partial output: the
// generation may be started again behind a reset.
type midStreamError struct{ err error }

func (e *midStreamError) Error() string { return "after partial output: " + e.err.Error() }
func (e *midStreamError) Unwrap() error { return e.err }

// received is one result of the upstream stream's Recv.
type received struct {
	delta llm.Delta
	err   error
}

// streamed is what an upstream stream leaves besides its log entries: the
// answer itself is the log, which the cache write reads back.
type streamed struct {
	finishReason string
	usage        *protocol.Usage
	bytes        int           // output bytes, counted as the chunk cap counts them
	firstToken   time.Duration // request sent → first output delta; 0 without output
	slotWait     time.Duration // waited for an upstream slot
}

// answerTooLargeError ends a generation whose answer outgrew MaxAnswerBytes.
type answerTooLargeError struct{ limit int }

func (e *answerTooLargeError) Error() string {
	return fmt.Sprintf("the answer grew past %d bytes, this worker's answer limit (CHATFLEET_MAX_ANSWER_BYTES); the upstream request was cancelled", e.limit)
}

// generate streams the answer into the log within a GenAI client span
// (child of the leading job's span).
func (g *generation) generate(ctx context.Context, attempt int) (*streamed, error) {
	waitStart := time.Now()
	if !g.m.slots.llm.tryAcquire() {
		// Wait without the request slot, so the worker keeps serving
		// cache hits and followers meanwhile (see Slots).
		g.creatorPermit.park()
		g.appendEntry(attempt, entry{kind: entryProgress, stage: protocol.StageWaiting, reason: protocol.ReasonLLMSlot})
		if err := g.m.slots.llm.acquire(ctx); err != nil {
			return nil, err
		}
	}
	defer g.m.slots.llm.release()
	slotWait := time.Since(waitStart)
	g.appendEntry(attempt, entry{kind: entryProgress, stage: protocol.StageGenerating})
	g.m.stats.upstreamCalls.Add(1)
	g.m.metrics.upstreamCalls.Add(g.traceCtx, 1)
	spanCtx, span := g.m.tracer.Start(trace.ContextWithSpan(ctx, trace.SpanFromContext(g.traceCtx)), "chat "+g.job.Model,
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(genAIRequestAttributes(g.job)...))
	res, err := g.stream(spanCtx, attempt, span)
	if res != nil {
		res.slotWait = slotWait
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		span.SetAttributes(attribute.String("error.type", errorType(err)))
	} else {
		span.SetAttributes(attribute.StringSlice("gen_ai.response.finish_reasons", []string{res.finishReason}))
		if u := res.usage; u != nil {
			span.SetAttributes(attribute.Int("gen_ai.usage.input_tokens", u.PromptTokens), attribute.Int("gen_ai.usage.output_tokens", u.CompletionTokens))
		}
	}
	span.End()
	return res, err
}

// genAIRequestAttributes follow the OpenTelemetry GenAI conventions.
func genAIRequestAttributes(j *protocol.Job) []attribute.KeyValue {
	kv := []attribute.KeyValue{
		attribute.String("gen_ai.operation.name", "chat"),
		attribute.String("gen_ai.provider.name", "openai"),
		attribute.String("gen_ai.request.model", j.Model),
	}
	if j.Temperature != nil {
		kv = append(kv, attribute.Float64("gen_ai.request.temperature", *j.Temperature))
	}
	if j.MaxTokens != nil {
		kv = append(kv, attribute.Int("gen_ai.request.max_tokens", *j.MaxTokens))
	}
	return kv
}

// errorType names an upstream failure by its code for error.type.
func errorType(err error) string {
	var lerr *llm.Error
	if errors.As(err, &lerr) {
		return string(lerr.Code)
	}
	return "_OTHER"
}

// stream reads the upstream stream into the log, merging deltas that
// arrive within the chunk window and cutting them at the chunk cap. Once
// ctx is done (lease lost, nobody interested, timeout) it appends nothing
// more. An answer that outgrows MaxAnswerBytes ends it, and closing the
// stream cancels the upstream request.
func (g *generation) stream(ctx context.Context, attempt int, span trace.Span) (*streamed, error) {
	start := time.Now()
	stream, err := g.m.upstream.Stream(ctx, g.job)
	if err != nil {
		return nil, err
	}
	deltas, stop := g.readDeltas(stream)
	defer stop()

	res := &streamed{}
	m := merger{window: g.m.cfg.ChunkWindow, b: chunkBuilder{limit: g.m.chunkLimit()}, emit: func(e entry) { g.appendEntry(attempt, e) }}
	defer m.stopTimer()
	for {
		select {
		case r := <-deltas:
			// Take every delta already waiting too, so deltas that arrived
			// together go out together, at once.
		batch:
			for {
				if ctx.Err() != nil {
					return nil, ctx.Err() // fenced or unwanted: not one more delta
				}
				if r.err != nil {
					m.flush()
					if errors.Is(r.err, io.EOF) {
						return res, nil
					}
					if m.emitted > 0 {
						return nil, &midStreamError{r.err}
					}
					return nil, r.err
				}
				d := &r.delta
				if res.firstToken == 0 && d.HasOutput() {
					res.firstToken = max(time.Since(start), time.Nanosecond)
					span.AddEvent("gen_ai.first_token")
					span.SetAttributes(attribute.Float64("chatfleet.time_to_first_token_ms", ms(res.firstToken)))
				}
				if res.bytes += outputBytes(d); res.bytes > g.m.cfg.MaxAnswerBytes {
					return nil, &answerTooLargeError{limit: g.m.cfg.MaxAnswerBytes}
				}
				if d.FinishReason != "" {
					res.finishReason = d.FinishReason
				}
				if d.Usage != nil {
					res.usage = d.Usage
				}
				if err := m.add(d); err != nil {
					return nil, err
				}
				select {
				case r = <-deltas:
				default:
					break batch
				}
			}
			m.settle()
		case <-m.timerC():
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			m.flush()
		}
	}
}

// readDeltas reads stream in a goroutine of its own until it ends or stop
// is called; stop also closes the stream (ending a Recv in progress) and
// waits for the goroutine, so its caller owns it.
func (g *generation) readDeltas(stream *llm.Stream) (<-chan received, func()) {
	deltas := make(chan received, 64)
	quit, done := make(chan struct{}), make(chan struct{})
	g.m.routines.Go(func() {
		defer close(done)
		defer g.m.recoverPanic("panic reading the upstream stream; recovered", func(p any) {
			select {
			case deltas <- received{err: fmt.Errorf("panic reading the upstream stream: %v", p)}:
			case <-quit:
			}
		})
		for {
			d, err := stream.Recv()
			select {
			case deltas <- received{d, err}:
			case <-quit:
				return
			}
			if err != nil {
				return
			}
		}
	})
	return deltas, func() {
		close(quit)
		_ = stream.Close()
		<-done
	}
}

// merger batches deltas into chunk entries: deltas that arrive together,
// or after a quiet spell of at least window, go out at once (no added
// latency); deltas that follow a chunk closely are merged and go out when
// the window has passed. An entry that reaches the chunk cap goes out at
// once, whatever the window. A negative window turns merging off: one
// chunk per delta (more when a delta exceeds the cap).
type merger struct {
	window    time.Duration
	b         chunkBuilder
	emit      func(entry)
	emitted   int // chunk entries emitted
	lastFlush time.Time
	timer     *time.Timer
	armed     bool
}

// add takes a delta; settle decides when it goes out.
func (m *merger) add(d *llm.Delta) error {
	if !d.HasOutput() {
		return nil
	}
	if err := m.b.add(d, m.emitEntry); err != nil {
		return err
	}
	if m.window < 0 {
		m.flush()
	}
	return nil
}

func (m *merger) emitEntry(e entry) {
	m.emit(e)
	m.emitted++
	m.lastFlush = time.Now()
}

// settle flushes what add took, now or when the window has passed.
func (m *merger) settle() {
	if !m.b.has {
		return
	}
	since := time.Since(m.lastFlush)
	if since >= m.window {
		m.flush()
		return
	}
	if !m.armed {
		if m.timer == nil {
			m.timer = time.NewTimer(m.window - since)
		} else {
			m.timer.Reset(m.window - since)
		}
		m.armed = true
	}
}

func (m *merger) flush() {
	if m.armed {
		m.timer.Stop()
		m.armed = false
	}
	if m.b.has {
		m.emitEntry(m.b.take())
	}
}

// timerC is the channel of an armed timer, or nil (never ready).
func (m *merger) timerC() <-chan time.Time {
	if !m.armed {
		return nil
	}
	return m.timer.C
}

func (m *merger) stopTimer() {
	if m.timer != nil {
		m.timer.Stop()
	}
}

// errorFor maps a generation failure onto the error a request reports.
func errorFor(err error, cause error) *protocol.Error {
	if errors.Is(cause, errTimeout) {
		return &protocol.Error{Code: protocol.CodeTimeout, Message: "the generation exceeded the processing timeout"}
	}
	var lerr *llm.Error
	if errors.As(err, &lerr) {
		return lerr.Protocol()
	}
	var tooLarge *answerTooLargeError
	if errors.As(err, &tooLarge) {
		return &protocol.Error{Code: protocol.CodeAnswerTooLarge, Message: tooLarge.Error()}
	}
	if errors.Is(err, errToolCallHeader) {
		return &protocol.Error{Code: protocol.CodeUpstreamError, Message: "the upstream sent a malformed stream: " + err.Error()}
	}
	if err == nil {
		err = cause
	}
	msg := "internal error"
	if err != nil {
		msg = err.Error()
	}
	return &protocol.Error{Code: protocol.CodeInternal, Message: msg}
}
