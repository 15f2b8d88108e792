package protocol

import "fmt"

// Code is a stable error code in an error event.
type Code string

// Error codes. New codes may be added; producers should treat an unknown
// code like CodeInternal.
const (
	// CodeInvalidRequest: the job is malformed or breaks a limit; Field names
	// the offending field. Never retried.
	CodeInvalidRequest Code = "invalid_request"
	// CodeQueueFull: the jobs stream is at its backlog limit (returned to
	// the producer by the publish, not as an event).
	CodeQueueFull Code = "queue_full"
	// CodeQueueTimeout: the job waited in the queue longer than allowed.
	CodeQueueTimeout Code = "queue_timeout"
	// CodeTimeout: the job ran longer than its processing timeout.
	CodeTimeout Code = "timeout"
	// CodeRateLimited: the upstream kept answering 429.
	CodeRateLimited Code = "rate_limited"
	// CodeUpstreamUnavailable: the upstream could not be reached or kept
	// failing with 5xx, or its circuit breaker is open.
	CodeUpstreamUnavailable Code = "upstream_unavailable"
	// CodeUpstreamError: the upstream refused the request (4xx) or broke
	// off mid-stream; Status holds its HTTP status when there was one.
	CodeUpstreamError Code = "upstream_error"
	// CodeAnswerTooLarge: the answer grew past the worker's answer limit
	// (CHATFLEET_MAX_ANSWER_BYTES); the upstream request was cancelled.
	CodeAnswerTooLarge Code = "answer_too_large"
	// CodeDuplicateID: the request ID was used before by another job whose
	// reply is still kept; choose a new ID. Sent after the older reply's
	// events, so its seq is not 1.
	CodeDuplicateID Code = "duplicate_id"
	// CodeQuotaExceeded: a limit of the job's tenant was reached (Limit
	// names it): its queued jobs (refused by the jobs stream to the
	// publisher, or ended when over the tenant's own max_queued), its
	// generations in flight or its tokens per minute or day, for a tenant
	// that does not wait at its limits. RetryAfterMS, when set, says when
	// to try again.
	CodeQuotaExceeded Code = "quota_exceeded"
	// CodeUnknownTool: the job names a fleet tool no tool service of the
	// fleet offers (Field is "fleet_tools").
	CodeUnknownTool Code = "unknown_tool"
	// CodeToolRounds: the model kept calling fleet tools past the
	// worker's limit on rounds (CHATFLEET_TOOL_MAX_ROUNDS).
	CodeToolRounds Code = "tool_rounds_exceeded"
	// CodeToolNotIdempotent: the generation must start again (its leader
	// died, or the upstream broke off) after it called a tool marked not
	// idempotent, which must not run twice.
	CodeToolNotIdempotent Code = "tool_not_idempotent"
	// CodePrepareFailed: the preparation service failed or timed out, and
	// the worker's policy is to fail the job (CHATFLEET_PREPARE=required).
	CodePrepareFailed Code = "prepare_failed"
	// CodeInternal: a fault inside chatfleet.
	CodeInternal Code = "internal"
)

// Error is the error of an error event.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	// Field names the offending job field for CodeInvalidRequest.
	Field string `json:"field,omitempty"`
	// Status is the upstream's HTTP status, when there was one.
	Status int `json:"status,omitempty"`
	// Limit names the tenant's limit a CodeQuotaExceeded error reached:
	// LimitMaxQueued, LimitMaxInflight, LimitTokensPerMinute or
	// LimitTokensPerDay.
	Limit string `json:"limit,omitempty"`
	// RetryAfterMS is how long to wait before submitting again, in
	// milliseconds, when it can be told (CodeQuotaExceeded); 0 when not.
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s: %s", e.Code, e.Field, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}
