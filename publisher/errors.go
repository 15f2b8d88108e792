package publisher

import (
	"errors"
	"fmt"

	"github.com/chatfleet/chatfleet/protocol"
)

// Errors returned by the publisher. A *JobError matches the sentinel of its
// code class with errors.Is.
var (
	// ErrQueueFull: the jobs stream is at its backlog limit; retry later.
	ErrQueueFull = errors.New("publisher: queue full")
	// ErrQuotaExceeded: a limit of the job's tenant was reached (code
	// quota_exceeded): Submit's *JobError when the jobs stream refused the
	// job for the tenant's cap on queued jobs; a reply's when a worker ended
	// it at the tenant's own max_queued, max_inflight or token limits.
	// JobError.Err.Limit names the limit, and RetryAfterMS says when to
	// try again where it can be told.
	ErrQuotaExceeded = errors.New("publisher: tenant quota exceeded")
	// ErrInvalidJob: the job failed validation (code invalid_request).
	ErrInvalidJob = errors.New("publisher: invalid job")
	// ErrCancelled: the request was cancelled.
	ErrCancelled = errors.New("publisher: request cancelled")
	// ErrTimeout: the request timed out, in the queue or while running, or
	// no event arrived within the wait timeout.
	ErrTimeout = errors.New("publisher: timeout")
	// ErrUpstream: the LLM upstream failed (codes upstream_error,
	// upstream_unavailable, rate_limited).
	ErrUpstream = errors.New("publisher: upstream error")
	// ErrAlreadyFinished: Cancel was called for a request that has ended.
	ErrAlreadyFinished = errors.New("publisher: request already finished")
	// ErrReplyEnded: Next was called after the terminal event or Stop.
	ErrReplyEnded = errors.New("publisher: reply already ended")
	// ErrEventsLost: the replies stream no longer holds events this reply
	// missed (they aged out or were discarded).
	ErrEventsLost = errors.New("publisher: reply events lost")
	// ErrInvalidOption: an option was given a bad value.
	ErrInvalidOption = errors.New("publisher: invalid option")
	// ErrNoStream: no jobs stream stores the job's subject. The topology
	// does not exist yet: a worker creates it when it starts, and so does
	// `chatfleet init`.
	ErrNoStream = errors.New("publisher: no jobs stream")
)

// topologyHint is how to create streams and buckets that are missing.
const topologyHint = "run a worker or `chatfleet init` to create them"

// JobError is a request that ended with an error event.
type JobError struct {
	Tenant string
	ID     string
	Err    protocol.Error
}

func (e *JobError) Error() string {
	return fmt.Sprintf("publisher: request %s/%s failed: %s", e.Tenant, e.ID, e.Err.Error())
}

// Code returns the error code.
func (e *JobError) Code() protocol.Code { return e.Err.Code }

// Unwrap returns the *protocol.Error.
func (e *JobError) Unwrap() error { return &e.Err }

// Is matches the sentinel of the error's code class.
func (e *JobError) Is(target error) bool {
	switch e.Err.Code {
	case protocol.CodeInvalidRequest:
		return target == ErrInvalidJob
	case protocol.CodeTimeout, protocol.CodeQueueTimeout:
		return target == ErrTimeout
	case protocol.CodeUpstreamError, protocol.CodeUpstreamUnavailable, protocol.CodeRateLimited:
		return target == ErrUpstream
	case protocol.CodeQueueFull:
		return target == ErrQueueFull
	case protocol.CodeQuotaExceeded:
		return target == ErrQuotaExceeded
	}
	return false
}
