package gateway

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
)

// handleResume answers GET /v1/chat/completions/{id}/stream: the
// request's stream again, from the chunk after Last-Event-ID (or
// ?after=), from the replies stream, on any replica. A browser's
// EventSource authenticates with ?token= (the stream's resume token).
func (g *Gateway) handleResume(ctx context.Context, rec *recorder, r *http.Request) {
	id := strings.TrimPrefix(r.PathValue("id"), "chatcmpl-")
	tenant, includeUsage, ok := g.resumeAuth(r, id)
	if !ok {
		errUnauthorized.write(rec)
		return
	}
	rec.tenant = tenant
	var after eventPos
	if v := firstOf(r.Header.Get("Last-Event-ID"), r.URL.Query().Get("after")); v != "" {
		if after, ok = parsePos(v); !ok {
			newError(http.StatusBadRequest, "invalid_request_error", "invalid_request", "after", "want an event id such as 12 or 12.1").write(rec)
			return
		}
	}
	last, found, err := g.pub.LastEvent(ctx, tenant, id)
	switch {
	case err != nil:
		submitError(err).write(rec)
		return
	case !found:
		newError(http.StatusNotFound, "invalid_request_error", "not_found", "", "no request "+id+" (or its reply expired)").write(rec)
		return
	}
	// The gateway whose client dropped the stream must not cancel it.
	_ = g.nc.Publish(g.cfg.Names.GatewayResumed(tenant, id), nil)
	reply, err := g.pub.Attach(ctx, tenant, id)
	if err != nil {
		submitError(err).write(rec)
		return
	}
	defer reply.Stop()
	rec.Header().Set(HeaderRequestID, id)
	s := &sse{w: rec, rc: http.NewResponseController(rec), stall: g.cfg.WriteStall, id: "chatcmpl-" + id, created: time.Now().Unix(),
		includeUsage: includeUsage, after: after}
	if err := s.start(); err != nil {
		return
	}
	rec.firstByte()
	if after.none() && last.Type.Terminal() {
		// A whole answer that has ended: read it first, so the client gets
		// only the output after its last reset, never a spliced one.
		g.replayEnded(ctx, s, reply)
		return
	}
	seen := false // an event: s.epoch is its writer's
	for {
		ev, err := reply.Next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				_ = s.fail(0, waitError(err))
			}
			return // a resumed stream's client leaving cancels nothing
		}
		if takenOverBehind(&ev, reply.Epoch(), s.epoch, seen, after) {
			_ = s.fail(0, errTakenOverBehind(s.requestID())) // no id: see the reset in sse.write
			return
		}
		seen, s.epoch = true, reply.Epoch()
		if done, err := s.event(&ev); done || err != nil {
			return
		}
	}
}

// takenOverBehind reports a reset by another writer (a takeover) at or
// before the position a resumed client had reached, when the client's
// events there were not that writer's (its SSE id names the writer): with
// live replies they may be the first writer's, shown and never stored,
// which the takeover replaced. The stream ends as it does for a reset
// after output. A client whose id is the takeover's writer's saw the
// reset before any output, and goes on. A writer without epochs (an older
// worker) counts as another one.
func takenOverBehind(ev *protocol.Event, epoch, prevEpoch uint64, prevSeen bool, after eventPos) bool {
	return ev.Type == protocol.EventReset && prevSeen && epoch != prevEpoch &&
		!after.none() && !after.before(eventPos{seq: ev.Seq}) && (epoch == 0 || epoch != after.epoch)
}

// errTakenOverBehind is the stream_reset of a resume behind a takeover.
func errTakenOverBehind(id string) *httpError {
	return newError(http.StatusBadGateway, "server_error", "stream_reset", "",
		"the fleet restarted this answer (its worker was replaced) before the event you resumed after; the partial output is void: read the whole answer again with GET /v1/chat/completions/"+id+"/stream once it has finished, or retry")
}

// replayEnded writes an ended reply from its meta event and everything
// after its last reset.
func (g *Gateway) replayEnded(ctx context.Context, s *sse, reply *publisher.Reply) {
	var events []protocol.Event
	var epochs []uint64
	for ev, err := range reply.Events(ctx) {
		if err != nil {
			_ = s.fail(0, waitError(err))
			return
		}
		events, epochs = append(events, ev), append(epochs, reply.Epoch())
	}
	from := 0
	for i, ev := range events {
		if ev.Type == protocol.EventReset {
			from = i + 1
		}
	}
	for i := range events {
		ev := &events[i]
		if (i > 0 && i < from) || ev.Type == protocol.EventReset {
			continue // the meta event, then only the output that stood
		}
		s.epoch = epochs[i]
		if done, err := s.event(ev); done || err != nil {
			return
		}
	}
}

// resumeAuth authenticates a resume: a bearer key (its tenant), or a
// resume token for this request.
func (g *Gateway) resumeAuth(r *http.Request, id string) (tenant string, includeUsage bool, ok bool) {
	if tok := r.URL.Query().Get("token"); tok != "" {
		t, valid := parseResumeToken(tok, g.secret, time.Now())
		if !valid || t.ID != id {
			return "", false, false
		}
		return t.Tenant, t.IncludeUsage, true
	}
	tenant, ok = g.tenant(r)
	usage, _ := strconv.ParseBool(r.URL.Query().Get("include_usage"))
	return tenant, usage, ok
}

func firstOf(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
