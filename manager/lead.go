package manager

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/protocol"
)

// lead generates the answer: take an upstream slot, stream from the
// upstream into the log, then cache the answer, append the end, and only
// then release the lease, so a request arriving at any moment finds either
// the live generation or the cached answer. l is nil when dedupe is off.
func (h *hub) lead(l *lease, genID string) routeResult {
	gen, ok := h.newGeneration(modeLeader, genID, trace.SpanContextFromContext(h.traceCtx))
	if !ok {
		if l != nil {
			h.releaseLease(l)
		}
		return routeEnded
	}
	h.m.hubs.recheck(h)
	defer h.m.hubs.lead(genID, h)()
	h.m.stats.leading.Add(1)
	defer h.m.stats.leading.Add(-1)

	ctx, cancelLead := context.WithCancelCause(h.ctx)
	defer cancelLead(nil)
	if l != nil {
		// The keeper renews until release, through the cache write and the
		// end's publication, so the lease cannot lapse while we finish.
		l.keep(func() { cancelLead(errLeaseLost) })
		defer l.stopKeeping()
	}
	ctx, cancelTimeout := context.WithTimeoutCause(ctx, h.m.cfg.ProcessingTimeout, errTimeout)
	defer cancelTimeout()

	var res *streamed
	err := h.checkRestartable()
	if err == nil {
		err = h.prepare(ctx, gen)
	}
	if err == nil {
		res, err = h.generateWithRestarts(ctx, gen)
	}
	if err == nil && l != nil && l.isLost() {
		err = errLeaseLost // fenced just as the stream ended: not ours to publish
	}
	cause := context.Cause(ctx)
	switch {
	case err == nil:
		h.succeeded(gen, res)
	case errors.Is(err, errLeaseLost), errors.Is(cause, errLeaseLost):
		// Fenced: someone else leads now. Publish nothing more; route again.
		h.m.countLeaseLost(h.traceCtx)
		h.m.cfg.Logger.Warn("leader lease lost; routing again", "key", h.dedupeKey, "gen", genID)
		return routeAgain
	default:
		h.failed(ctx, err)
	}
	if l != nil {
		h.releaseLease(l)
	}
	return routeEnded
}

// generateWithRestarts generates the answer, starting it again behind a
// reset when the upstream stream breaks after partial output (up to
// MidStreamRetries times, and only for failures another call may not meet).
func (h *hub) generateWithRestarts(ctx context.Context, gen int) (*streamed, error) {
	res, err := h.generateRounds(ctx, gen)
	for retry := 0; err != nil && retry < h.m.cfg.MidStreamRetries && ctx.Err() == nil; retry++ {
		var broke *midStreamError
		if !errors.As(err, &broke) || !restartable(broke.err) {
			break
		}
		if h.calledNotIdempotent() {
			err = errNotIdempotent
			break
		}
		// Everyone discards the partial output (reset), and the answer
		// starts again.
		h.m.cfg.Logger.Warn("upstream stream broke mid-answer; starting it again", "key", h.dedupeKey, "err", broke.err)
		h.appendEntry(gen, entry{kind: entryReset})
		res, err = h.generateRounds(ctx, gen)
	}
	var broke *midStreamError
	if errors.As(err, &broke) {
		err = broke.err
	}
	return res, err
}

// succeeded ends generation gen with its answer: tokens counted, the answer
// cached (before the end is appended, so a request arriving once it ended
// finds the cache), then the end.
func (h *hub) succeeded(gen int, res *streamed) {
	if u := res.usage; u != nil {
		h.m.metrics.tokens.Add(h.traceCtx, int64(u.PromptTokens), promptTokens)
		h.m.metrics.tokens.Add(h.traceCtx, int64(u.CompletionTokens), completionTokens)
	}
	h.m.usedTokens(h.traceCtx, h.job.Tenant, res.usage) // before the end: the next generation's check sees it
	h.m.chargeUpstream(res.upstream, res.charge)
	if h.useCache {
		h.cacheAnswer(gen, res)
	}
	h.appendEntry(gen, entry{kind: entryEnd, end: &ending{typ: protocol.EventDone, finishReason: res.finishReason, usage: res.usage,
		slotWait: res.slotWait, upstreamTTFT: res.firstToken, shared: h.shared()}})
}

// failed ends the hub after a generation failed with err (or its ctx
// ended), logging what an operator needs and never the upstream's message:
// it may quote the request.
func (h *hub) failed(ctx context.Context, err error) {
	if tooLarge := (*answerTooLargeError)(nil); errors.As(err, &tooLarge) {
		h.m.cfg.Logger.Warn("answer too large; upstream request cancelled", "tenant", h.job.Tenant, "request", h.job.ID,
			"key", h.dedupeKey, "limit", tooLarge.limit)
	}
	if lerr := (*llm.Error)(nil); errors.As(err, &lerr) && ctx.Err() == nil {
		h.m.metrics.upstreamErrors.Add(h.traceCtx, 1, attrs(attribute.String("code", string(lerr.Code))))
		h.m.cfg.Logger.Warn("upstream failed", "tenant", h.job.Tenant, "request", h.job.ID, "key", h.dedupeKey,
			"code", lerr.Code, "status", lerr.Status)
	}
	h.endByContext(ctx, err)
}

// midStreamError is an upstream failure after partial output: the
// generation may be started again behind a reset.
type midStreamError struct{ err error }

func (e *midStreamError) Error() string { return "after partial output: " + e.err.Error() }
func (e *midStreamError) Unwrap() error { return e.err }

// errorFor maps a generation failure onto the error a request reports.
func errorFor(err error, cause error) *protocol.Error {
	if errors.Is(cause, errTimeout) {
		return &protocol.Error{Code: protocol.CodeTimeout, Message: "the generation exceeded the processing timeout"}
	}
	var lerr *llm.Error
	if errors.As(err, &lerr) {
		return lerr.Protocol()
	}
	var quota *quotaError
	if errors.As(err, &quota) {
		return quota.protocol()
	}
	var tooLarge *answerTooLargeError
	if errors.As(err, &tooLarge) {
		return &protocol.Error{Code: protocol.CodeAnswerTooLarge, Message: tooLarge.Error()}
	}
	var rounds *toolRoundsError
	if errors.As(err, &rounds) {
		return &protocol.Error{Code: protocol.CodeToolRounds, Message: rounds.Error()}
	}
	var unknown *unknownToolError
	if errors.As(err, &unknown) {
		return &protocol.Error{Code: protocol.CodeUnknownTool, Field: "fleet_tools", Message: unknown.Error()}
	}
	if errors.Is(err, errNotIdempotent) {
		return &protocol.Error{Code: protocol.CodeToolNotIdempotent, Message: err.Error()}
	}
	var prep *prepareError
	if errors.As(err, &prep) {
		return &protocol.Error{Code: protocol.CodePrepareFailed, Message: prep.Error()}
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
