package protocol

import "encoding/json"

// EventType is the type of a reply event.
type EventType string

// Event types.
const (
	// EventMeta says a worker accepted the job: Worker and Role are set.
	EventMeta EventType = "meta"
	// EventChunk carries a text delta (Content), tool-call deltas, a
	// refusal delta and/or a reasoning delta.
	EventChunk EventType = "chunk"
	// EventReset says: discard the output so far; new output follows.
	EventReset EventType = "reset"
	// EventDone ends a request that succeeded (terminal).
	EventDone EventType = "done"
	// EventError ends a request that failed (terminal): Error is set.
	EventError EventType = "error"
	// EventCancelled ends a request that was cancelled (terminal).
	EventCancelled EventType = "cancelled"
	// EventProgress says the request is alive and what it waits for
	// (Stage, Reason): sent when the stage changes, and again after a quiet
	// spell until the first chunk. It carries no output.
	EventProgress EventType = "progress"
	// EventTool is a step of a fleet tool call the leader runs (Tool): its
	// start, a piece of streamed output, its end. It carries no answer
	// text; the model reads the tool's output and answers after it.
	EventTool EventType = "tool"
)

// Stages of a progress event. New stages may appear; a client treats an
// unknown stage as "still working".
const (
	// StageWaiting: the request waits for capacity; Reason says which.
	StageWaiting = "waiting"
	// StageGenerating: the upstream has the request; no output yet.
	StageGenerating = "generating"
	// StagePreparing: the leader waits for the preparation service.
	StagePreparing = "preparing"
)

// Reasons of a waiting stage.
const (
	// ReasonLLMSlot: every upstream stream slot of the worker is busy.
	ReasonLLMSlot = "llm_slot"
	// ReasonFollowerSlot: every follower slot of the worker is busy.
	ReasonFollowerSlot = "follower_slot"
	// ReasonTenantPaused: the job's tenant is paused.
	ReasonTenantPaused = "tenant_paused"
	// ReasonTenantInflight: the tenant has its limit of generations in
	// flight across the fleet (max_inflight).
	ReasonTenantInflight = "tenant_inflight"
	// ReasonTenantTokens: the tenant has used its tokens per minute or per
	// day.
	ReasonTenantTokens = "tenant_tokens"
)

// HeaderJobSeq is the header every stored reply event carries: the
// jobs-stream sequence of the job it answers. A request ID names its reply
// subject, so a job that reuses an ID finds an earlier job's events there;
// a reader that knows its job's sequence (the publisher, from the publish
// ack) skips events that carry another. Events stored by workers older than
// the header carry none.
const HeaderJobSeq = "Chatfleet-Job-Seq"

// HeaderLive on a job asks for live events: the worker publishes each
// event on the reply subject at once (a redelivery after storing its
// first, a reset), and stores the events in batches (see HeaderBatch),
// instead of storing each before it is seen. The stream republishes the stored batches on the reply subject
// too; a reader keeps the first copy of each seq and must follow the rules
// of HeaderEpoch. The publisher sets it to "1".
const HeaderLive = "Chatfleet-Live"

// HeaderEpoch is carried by every event a worker wrote for a live job
// (HeaderLive), live or stored: the job's delivery number, so a later
// writer of the same reply (a redelivery) has a higher epoch. The events a
// writer shows may be stored up to a batch later, or never if it dies or
// is fenced. A writer that takes over a reply stores a reset first,
// continuing after the last stored event. So a reader accepts a stored
// reset of a writer it has not followed yet at or below the seq it expects
// next (the reset discards what the previous writer showed and never
// stored), takes live events only from the writer it follows, and never
// splices two writers' output.
const HeaderEpoch = "Chatfleet-Epoch"

// Terminal reports whether t ends a request.
func (t EventType) Terminal() bool {
	return t == EventDone || t == EventError || t == EventCancelled
}

// Role says how a worker served a request.
type Role string

// Roles in meta events.
const (
	// RoleLeader: this request's worker called the upstream for it.
	RoleLeader Role = "leader"
	// RoleFollower: this request shares a generation another request leads.
	RoleFollower Role = "follower"
	// RoleCache: this request is answered from the answer cache.
	RoleCache Role = "cache"
)

// Event is one reply event. Which fields are set depends on Type.
type Event struct {
	V    int       `json:"v"`
	ID   string    `json:"id"`
	Seq  uint64    `json:"seq"`
	Type EventType `json:"type"`

	// meta
	Worker string `json:"worker,omitempty"`
	Role   Role   `json:"role,omitempty"`
	Model  string `json:"model,omitempty"`

	// chunk
	Content   string     `json:"content,omitempty"`
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
	// Refusal is the model declining to answer (OpenAI's "refusal").
	Refusal string `json:"refusal,omitempty"`
	// ReasoningContent is a reasoning model's thinking, separate from the
	// answer ("reasoning_content", as DeepSeek and vLLM send it).
	ReasoningContent string `json:"reasoning_content,omitempty"`

	// tool
	Tool *ToolEvent `json:"tool,omitempty"`

	// done
	FinishReason string   `json:"finish_reason,omitempty"`
	Usage        *Usage   `json:"usage,omitempty"`
	Timings      *Timings `json:"timings,omitempty"`
	// Cached is true when the answer came from the answer cache; omitted
	// when false.
	Cached bool `json:"cached,omitempty"`
	// Shared is true when the generation that answered the request served
	// other requests too: it followed another request's generation, or it
	// led one that others followed (as far as its worker knew at the end);
	// omitted when false.
	Shared bool `json:"shared,omitempty"`
	// BilledUsage is what the request itself cost its tenant: the
	// generation's usage when it led it, zero when it followed another
	// request's generation or read the cache. Omitted when the upstream
	// reported no usage, and by older workers.
	BilledUsage *Usage `json:"billed_usage,omitempty"`

	// error
	Error *Error `json:"error,omitempty"`

	// progress
	Stage  string `json:"stage,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Usage counts tokens, as the upstream reported them.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// Timings of one request, in milliseconds.
type Timings struct {
	// QueueMS is the time from the job's arrival in the jobs stream to a
	// worker pulling it.
	QueueMS float64 `json:"queue_ms"`
	// TTFTMS is the time from the job's arrival to its first chunk event
	// (0 when there was none).
	TTFTMS float64 `json:"ttft_ms"`
	// TotalMS is the time from the job's arrival to its terminal event.
	TotalMS float64 `json:"total_ms"`
	// SlotWaitMS is how long the generation the request shared waited for
	// an upstream slot (omitted for cache hits and old workers).
	SlotWaitMS float64 `json:"slot_wait_ms,omitempty"`
	// UpstreamTTFTMS is the upstream's own time to first token: from the
	// request sent to the first output delta (omitted like SlotWaitMS).
	UpstreamTTFTMS float64 `json:"upstream_ttft_ms,omitempty"`
}

// Marshal encodes e as the JSON of one event.
func (e *Event) Marshal() ([]byte, error) { return json.Marshal(e) }

// DecodeEvent decodes one event.
func DecodeEvent(b []byte) (Event, error) {
	var e Event
	err := json.Unmarshal(b, &e)
	return e, err
}
