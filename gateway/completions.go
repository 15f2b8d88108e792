package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
)

// handleCompletions answers POST /v1/chat/completions: the request
// becomes a job; its reply becomes a stream of chunks or one completion.
func (g *Gateway) handleCompletions(ctx context.Context, rec *recorder, r *http.Request) {
	tenant, ok := g.authenticate(rec, r)
	if !ok {
		return
	}
	req, herr := g.readCompletionRequest(r, tenant)
	if herr != nil {
		herr.write(rec)
		return
	}
	if !g.fleet.workersRunning(ctx) {
		errNoWorkers.write(rec)
		return
	}
	reply, err := g.pub.Submit(ctx, req.job)
	if err != nil {
		submitError(err).write(rec)
		return
	}
	defer reply.Stop()
	rec.Header().Set(HeaderRequestID, reply.ID())
	trace.SpanFromContext(ctx).SetAttributes(attribute.String("chatfleet.tenant", tenant), attribute.String("messaging.message.id", reply.ID()))
	if req.stream {
		tok := resumeToken{Tenant: tenant, ID: reply.ID(), IncludeUsage: req.includeUsage, Expires: time.Now().Add(g.cfg.ResumeTokenTTL)}
		rec.Header().Set(HeaderResumeToken, tok.sign(g.secret))
		s := &sse{w: rec, rc: http.NewResponseController(rec), stall: g.cfg.WriteStall, id: "chatcmpl-" + reply.ID(), model: req.job.Model,
			created: time.Now().Unix(), includeUsage: req.includeUsage}
		g.stream(ctx, rec, s, reply, tenant)
		return
	}
	g.complete(ctx, rec, reply, tenant, req.job.Model)
}

// stream relays reply as SSE. The response status waits for the first
// event: a job refused by a worker (an invalid model, say) gets its HTTP
// error; once the worker accepted it, the stream starts.
func (g *Gateway) stream(ctx context.Context, rec *recorder, s *sse, reply *publisher.Reply, tenant string) {
	g.metrics.openStreams.Add(ctx, 1)
	defer g.metrics.openStreams.Add(ctx, -1)
	for {
		ev, err := reply.Next(ctx)
		if err != nil {
			if ctx.Err() != nil { // the client went away
				g.cancelUnlessResumed(tenant, reply.ID())
				return
			}
			e := waitError(err)
			if !s.wrote {
				e.write(rec)
				return
			}
			_ = s.fail(0, e)
			return
		}
		first := !s.wrote
		if first {
			if ev.Type == protocol.EventError || ev.Type == protocol.EventCancelled {
				if ev.Type == protocol.EventCancelled || ev.Error == nil {
					errCancelled.write(rec)
				} else {
					fromProtocol(ev.Error).write(rec)
				}
				return
			}
			s.writeHeader() // sent with the first event, in one write
		}
		s.epoch = reply.Epoch()
		done, err := s.event(&ev)
		if first && err == nil {
			rec.firstByte()
		}
		if err != nil { // the client is gone
			if !done {
				g.cancelUnlessResumed(tenant, reply.ID())
			}
			return
		}
		if done {
			return
		}
	}
}

// complete answers stream: false with the whole answer, resets applied.
func (g *Gateway) complete(ctx context.Context, rec *recorder, reply *publisher.Reply, tenant, model string) {
	ans, err := reply.Collect(ctx)
	var jerr *publisher.JobError
	switch {
	case ctx.Err() != nil:
		g.cancelLater(tenant, reply.ID())
		return
	case errors.As(err, &jerr):
		fromProtocol(&jerr.Err).write(rec)
		return
	case errors.Is(err, publisher.ErrCancelled):
		errCancelled.write(rec)
		return
	case err != nil:
		waitError(err).write(rec)
		return
	}
	msg := message{Role: "assistant", ToolCalls: ans.ToolCalls, ReasoningContent: ans.Reasoning}
	if ans.Content != "" || len(ans.ToolCalls) == 0 {
		msg.Content = &ans.Content
	}
	if ans.Refusal != "" {
		msg.Refusal = &ans.Refusal
	}
	if ans.Model != "" {
		model = ans.Model
	}
	rec.Header().Set("Content-Type", "application/json")
	rec.WriteHeader(http.StatusOK)
	rec.firstByte()
	_ = json.NewEncoder(rec).Encode(completion{ID: "chatcmpl-" + reply.ID(), Object: "chat.completion", Created: time.Now().Unix(),
		Model: model, Choices: []completionChoice{{Index: 0, Message: msg, FinishReason: ans.FinishReason}}, Usage: ans.Usage})
}

// submitError maps a failed submit onto its HTTP answer.
func submitError(err error) *httpError {
	var jerr *publisher.JobError
	switch {
	case errors.As(err, &jerr):
		return fromProtocol(&jerr.Err)
	case errors.Is(err, publisher.ErrQueueFull):
		return fromProtocol(&protocol.Error{Code: protocol.CodeQueueFull, Message: "the fleet's queue is full"})
	case errors.Is(err, publisher.ErrNoStream):
		return newError(http.StatusServiceUnavailable, "server_error", "no_workers", "", "the fleet's streams do not exist: no worker ever ran")
	}
	return newError(http.StatusServiceUnavailable, "server_error", "nats_unavailable", "", "the fleet cannot be reached")
}

// waitError maps a failure while waiting for the reply.
func waitError(err error) *httpError {
	if errors.Is(err, publisher.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
		return newError(http.StatusGatewayTimeout, "server_error", "timeout", "", "no answer in time")
	}
	return newError(http.StatusBadGateway, "server_error", "reply_lost", "", "the reply could not be read")
}
