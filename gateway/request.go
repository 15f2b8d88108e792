package gateway

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/subjects"
)

// Request headers: chatfleet's controls of a job, beside the OpenAI body.
const (
	// HeaderRequestID chooses the request ID (1–128 of [A-Za-z0-9_-]): a
	// retry with the same ID within the fleet's duplicate window reads the
	// first one's answer instead of asking again. Every response carries
	// the request's ID in it.
	HeaderRequestID = "X-Chatfleet-Request-Id"
	// HeaderDedupe "false" keeps the request out of fleet-wide dedupe.
	HeaderDedupe = "X-Chatfleet-Dedupe"
	// HeaderCache "false" neither reads nor writes the answer cache.
	HeaderCache = "X-Chatfleet-Cache"
	// HeaderTimeoutMS bounds the job's processing time (the fleet's
	// processing timeout caps it).
	HeaderTimeoutMS = "X-Chatfleet-Timeout-Ms"
	// HeaderQueueTimeoutMS shortens the fleet's queue timeout for the job.
	HeaderQueueTimeoutMS = "X-Chatfleet-Queue-Timeout-Ms"
	// HeaderPriority is the job's priority: high, normal or low.
	HeaderPriority = "X-Chatfleet-Priority"
	// HeaderResumeToken, on a stream's response, is the token that
	// resumes it without an Authorization header (?token=).
	HeaderResumeToken = "X-Chatfleet-Resume-Token"
)

// completionRequest is a chat-completions request as a job, with what
// only the gateway reads from the body.
type completionRequest struct {
	job          protocol.Job
	stream       bool
	includeUsage bool
}

// readCompletionRequest reads the body and headers of a POST
// /v1/chat/completions for tenant.
func (g *Gateway) readCompletionRequest(r *http.Request, tenant string) (*completionRequest, *httpError) {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, g.cfg.MaxBodyBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, newError(http.StatusRequestEntityTooLarge, "invalid_request_error", "request_too_large", "",
			"the request body is larger than "+strconv.FormatInt(g.cfg.MaxBodyBytes, 10)+" bytes")
	}
	if err != nil {
		return nil, newError(http.StatusBadRequest, "invalid_request_error", "invalid_request", "", "cannot read the request body")
	}
	var openai struct {
		Stream        bool `json:"stream"`
		StreamOptions *struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	req := &completionRequest{}
	if err := json.Unmarshal(body, &openai); err != nil {
		return nil, badJSON(err)
	}
	if err := json.Unmarshal(body, &req.job); err != nil {
		return nil, badJSON(err)
	}
	req.stream = openai.Stream
	req.includeUsage = openai.StreamOptions != nil && openai.StreamOptions.IncludeUsage
	// The gateway and the worker set these: they are not the job's.
	delete(req.job.Extra, "stream")
	delete(req.job.Extra, "stream_options")
	if req.job.Tenant != "" && req.job.Tenant != tenant {
		return nil, newError(http.StatusBadRequest, "invalid_request_error", "invalid_request", "tenant",
			"the body names tenant "+strconv.Quote(req.job.Tenant)+"; this key's tenant is "+strconv.Quote(tenant))
	}
	req.job.Tenant = tenant
	if herr := applyControls(r.Header, &req.job); herr != nil {
		return nil, herr
	}
	return req, nil
}

// applyControls sets the job's chatfleet fields from the request headers.
func applyControls(h http.Header, job *protocol.Job) *httpError {
	if id := h.Get(HeaderRequestID); id != "" {
		if err := subjects.ValidName("id", id); err != nil {
			return newError(http.StatusBadRequest, "invalid_request_error", "invalid_request", HeaderRequestID, err.Error())
		}
		job.ID = id
	}
	if v := h.Get(HeaderPriority); v != "" {
		p := protocol.Priority(strings.ToLower(strings.TrimSpace(v)))
		if p.Rank() < 0 {
			return newError(http.StatusBadRequest, "invalid_request_error", "invalid_request", HeaderPriority, "want high, normal or low, got "+strconv.Quote(v))
		}
		job.Priority = p
	}
	for _, b := range []struct {
		header string
		dst    **bool
	}{{HeaderDedupe, &job.Dedupe}, {HeaderCache, &job.Cache}} {
		if v := h.Get(b.header); v != "" {
			on, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				return newError(http.StatusBadRequest, "invalid_request_error", "invalid_request", b.header, "want true or false, got "+strconv.Quote(v))
			}
			*b.dst = &on
		}
	}
	for _, n := range []struct {
		header string
		dst    *int64
	}{{HeaderTimeoutMS, &job.TimeoutMS}, {HeaderQueueTimeoutMS, &job.QueueTimeoutMS}} {
		if v := h.Get(n.header); v != "" {
			ms, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil || ms <= 0 {
				return newError(http.StatusBadRequest, "invalid_request_error", "invalid_request", n.header, "want a positive number of milliseconds, got "+strconv.Quote(v))
			}
			*n.dst = ms
		}
	}
	return nil
}

// badJSON is the 400 for a body that does not decode: a field of the
// wrong JSON type is named in param; anything else is not JSON at all.
func badJSON(err error) *httpError {
	perr := protocol.DecodeError(err)
	if perr.Field != "" {
		return newError(http.StatusBadRequest, "invalid_request_error", "invalid_type", perr.Field, perr.Field+": "+perr.Message)
	}
	return newError(http.StatusBadRequest, "invalid_request_error", "invalid_json", "", "the request body is not a JSON object")
}
