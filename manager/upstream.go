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

// upstreamResult is one result of the upstream stream's Recv.
type upstreamResult struct {
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
	upstream     string        // the upstream that answered (the last turn)
	// charge is the usage still to count against upstream's tokens per
	// minute: the last turn's; earlier turns were counted as they ended.
	charge *protocol.Usage
}

// answerTooLargeError ends a generation whose answer outgrew MaxAnswerBytes.
type answerTooLargeError struct{ limit int }

func (e *answerTooLargeError) Error() string {
	return fmt.Sprintf("the answer grew past %d bytes, this worker's answer limit (CHATFLEET_MAX_ANSWER_BYTES); the upstream request was cancelled", e.limit)
}

// generate streams one model turn, rd, into the log from one of the
// upstreams serving the job's model: the least loaded healthy one, and the
// next one when it cannot be reached before any output — one after the
// other, never two at once.
func (h *hub) generate(ctx context.Context, gen int, rd *round) (*streamed, error) {
	// The tenant's limits first: a generation waiting for its tenant holds
	// no upstream slot.
	sh, err := h.admit(ctx, gen)
	if err != nil {
		return nil, err
	}
	defer sh.release()
	var res *streamed
	routes := h.m.routes.candidates(h.job.Model)
	for i, r := range routes {
		res, err = h.generateOn(ctx, gen, r, rd)
		if err == nil || i == len(routes)-1 || ctx.Err() != nil || !failsOver(err) {
			break
		}
		h.m.cfg.Logger.Warn("upstream unreachable; failing over", "upstream", r.name, "next", routes[i+1].name,
			"tenant", h.job.Tenant, "request", h.job.ID, "code", errorType(err))
	}
	return res, err
}

// generateOn streams the answer from upstream r within a GenAI client span
// (child of the leading job's span).
func (h *hub) generateOn(ctx context.Context, gen int, r *route, rd *round) (*streamed, error) {
	// The upstream's limits, fleet-wide: waiting there holds no slot either.
	fleet, err := h.admitFleet(ctx, gen, r.name)
	if err != nil {
		return nil, err
	}
	defer fleet.release()
	waitStart := time.Now()
	if !h.m.slots.llm.tryAcquire() {
		// Wait without the request slot, so the worker keeps serving
		// cache hits and followers meanwhile (see Slots).
		h.creatorPermit.park()
		h.appendEntry(gen, entry{kind: entryProgress, stage: protocol.StageWaiting, reason: protocol.ReasonLLMSlot})
		if err := h.m.slots.llm.acquire(ctx); err != nil {
			return nil, err
		}
	}
	defer h.m.slots.llm.release()
	slotWait := time.Since(waitStart)
	h.appendEntry(gen, entry{kind: entryProgress, stage: protocol.StageGenerating})
	h.m.countUpstreamCall(h.traceCtx)
	spanCtx, span := h.m.tracer.Start(trace.ContextWithSpan(ctx, trace.SpanFromContext(h.traceCtx)), "chat "+h.job.Model,
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(genAIRequestAttributes(h.job)...))
	res, err := h.readUpstream(spanCtx, gen, span, r, rd)
	if res != nil {
		res.slotWait, res.upstream, res.charge = slotWait, r.name, res.usage
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

// readUpstream reads the upstream stream into the log, merging deltas that
// arrive within the chunk window and cutting them at the chunk cap. Once
// ctx is done (lease lost, nobody interested, timeout) it appends nothing
// more. An answer that outgrows MaxAnswerBytes ends it, and closing the
// stream cancels the upstream request.
func (h *hub) readUpstream(ctx context.Context, gen int, span trace.Span, r *route, rd *round) (*streamed, error) {
	start := time.Now()
	r.streams.Add(1)
	defer r.streams.Add(-1)
	rd.restart() // a failover reads the turn anew
	stream, err := r.client.Stream(ctx, rd.job)
	if err != nil {
		return nil, err
	}
	deltas, stop := h.readDeltas(stream)
	defer stop()

	res := &streamed{}
	window := chunkWindow{window: h.m.cfg.ChunkWindow, b: chunkBuilder{limit: h.m.chunkLimit()}, emit: func(e entry) { h.appendEntry(gen, e) }}
	defer window.stopTimer()
	for {
		select {
		case r := <-deltas:
			// Take every delta already waiting too, so deltas that arrived
			// together go out together, at once.
			for more := true; more; {
				if ctx.Err() != nil {
					return nil, ctx.Err() // fenced or unwanted: not one more delta
				}
				if r.err != nil {
					window.flush()
					switch {
					case errors.Is(r.err, io.EOF):
						return res, nil
					case window.emitted > 0:
						return nil, &midStreamError{r.err}
					}
					return nil, r.err
				}
				if err := rd.take(&r.delta, h.m.cfg.MaxAnswerBytes); err != nil {
					return nil, err
				}
				if err := h.take(&r.delta, res, rd.before, &window, time.Since(start), span); err != nil {
					return nil, err
				}
				select {
				case r = <-deltas:
				default:
					more = false
				}
			}
			window.settle()
		case <-window.timerC():
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			window.flush()
		case <-ctx.Done():
			return nil, ctx.Err() // even if the upstream never answers its cancellation
		}
	}
}

// take adds one delta, which arrived after elapsed, to the answer: its
// output to the chunk window, its finish and usage to res. An answer that
// grows past MaxAnswerBytes ends here, earlier turns' output (before)
// included.
func (h *hub) take(d *llm.Delta, res *streamed, before int, window *chunkWindow, elapsed time.Duration, span trace.Span) error {
	if res.firstToken == 0 && d.HasOutput() {
		res.firstToken = max(elapsed, time.Nanosecond)
		span.AddEvent("gen_ai.first_token")
		span.SetAttributes(attribute.Float64("chatfleet.time_to_first_token_ms", ms(res.firstToken)))
	}
	if res.bytes += outputBytes(d); before+res.bytes > h.m.cfg.MaxAnswerBytes {
		return &answerTooLargeError{limit: h.m.cfg.MaxAnswerBytes}
	}
	if d.FinishReason != "" {
		res.finishReason = d.FinishReason
	}
	if d.Usage != nil {
		res.usage = d.Usage
	}
	return window.add(d)
}

// readDeltas reads stream in a goroutine of its own until it ends or stop
// is called; stop also closes the stream (ending a Recv in progress) and
// waits for the goroutine, so its caller owns it.
func (h *hub) readDeltas(stream *llm.Stream) (<-chan upstreamResult, func()) {
	deltas := make(chan upstreamResult, 64)
	quit, done := make(chan struct{}), make(chan struct{})
	started := h.m.routines.Go(func() {
		defer close(done)
		defer func() {
			if p := recover(); h.m.panicked(p, "panic reading the upstream stream; recovered") {
				select {
				case deltas <- upstreamResult{err: fmt.Errorf("panic reading the upstream stream: %v", p)}:
				case <-quit:
				}
			}
		}()
		for {
			d, err := stream.Recv()
			select {
			case deltas <- upstreamResult{d, err}:
			case <-quit:
				return
			}
			if err != nil {
				return
			}
		}
	})
	if !started { // the pool closed: the stream ends before it began
		deltas <- upstreamResult{err: errShutdown}
		close(done)
	}
	return deltas, func() {
		close(quit)
		_ = stream.Close()
		<-done
	}
}
