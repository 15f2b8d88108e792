package manager

import (
	"context"
	"errors"
	"fmt"

	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/tools"
)

// PrepareMode says whether a leader calls the tenant's preparation
// service, and what its failure does.
type PrepareMode string

// Preparation modes.
const (
	// PrepareOff: no preparation; the job's messages go upstream.
	PrepareOff PrepareMode = "off"
	// PrepareRequired: a preparation that fails, times out or has no
	// service fails the job with prepare_failed.
	PrepareRequired PrepareMode = "required"
	// PrepareOptional: a preparation that fails is logged, and the job's
	// own messages go upstream.
	PrepareOptional PrepareMode = "optional"
)

// prepareError is a failed preparation under PrepareRequired.
type prepareError struct{ err error }

func (e *prepareError) Error() string { return "the preparation failed: " + e.err.Error() }

// prepare asks the tenant's preparation service, once per generation and
// only in the leader, for the messages to send upstream; upstreamJob then
// returns the job with them. Followers never call it: they share what
// their leader's preparation gave.
func (h *hub) prepare(ctx context.Context, gen int) error {
	h.prepared = nil
	if h.m.cfg.Prepare == PrepareOff {
		return nil
	}
	h.appendEntry(gen, entry{kind: entryProgress, stage: protocol.StagePreparing})
	pctx, cancel := context.WithTimeout(ctx, h.m.cfg.PrepareTimeout)
	defer cancel()
	msgs, err := h.m.tools.Prepare(pctx, h.job)
	if err == nil {
		job := *h.job
		job.Messages = msgs
		if verr := job.Validate(h.m.cfg.Limits); verr != nil {
			err = fmt.Errorf("it returned a job the worker refuses: %w", verr)
		} else {
			h.prepared = &job
			return nil
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// why is what an operator may read in the logs: never the service's
	// own message, which may quote the request.
	var ce *tools.CallError
	why := "its answer could not be used"
	switch {
	case errors.Is(err, tools.ErrNoTool):
		err = errors.New("no preparation service answers for the tenant")
		why = err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		err = fmt.Errorf("no answer within %s", h.m.cfg.PrepareTimeout)
		why = err.Error()
	case errors.As(err, &ce):
		err = errors.New(ce.Msg)
		why = "the service answered an error (code " + ce.Code + ")"
	}
	if h.m.cfg.Prepare == PrepareRequired {
		return &prepareError{err: err}
	}
	h.m.cfg.Logger.Warn("preparation failed; the job goes on unprepared", "tenant", h.job.Tenant, "request", h.job.ID, "key", h.dedupeKey, "why", why)
	return nil
}

// upstreamJob is the job a generation sends upstream: the prepared one,
// or the producer's.
func (h *hub) upstreamJob() *protocol.Job {
	if h.prepared != nil {
		return h.prepared
	}
	return h.job
}
