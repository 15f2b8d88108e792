package protocol

import (
	"encoding/json"
	"reflect"
	"strings"
)

// Version is the protocol version this package speaks.
const Version = 1

// DefaultTenant is the tenant of a job that names none.
const DefaultTenant = "default"

// Job is one chat-completion job: an OpenAI chat-completions request body
// plus chatfleet's own fields.
type Job struct {
	// V is the protocol version; 0 is read as 1.
	V int `json:"v,omitempty"`
	// ID is the request ID. The publisher generates one when empty.
	ID string `json:"id,omitempty"`
	// Tenant scopes the job's subjects, dedupe keys and cache. Defaults to "default".
	Tenant string `json:"tenant,omitempty"`
	// Dedupe lets identical concurrent jobs share one generation. nil means
	// the worker's default (true unless configured otherwise).
	Dedupe *bool `json:"dedupe,omitempty"`
	// Cache lets the job read and write the answer cache. nil means the
	// worker's default (true unless configured otherwise).
	Cache *bool `json:"cache,omitempty"`
	// TimeoutMS bounds the job's processing time in milliseconds; 0 means
	// the worker's processing timeout.
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
	// QueueTimeoutMS ends the job with queue_timeout when it has waited
	// longer than this in the queue; 0 means the fleet's queue timeout.
	// Workers older than the field forward it to the upstream: set it only
	// once every worker understands it.
	QueueTimeoutMS int64 `json:"queue_timeout_ms,omitempty"`
	// Priority orders the job where it waits; empty is normal.
	Priority Priority `json:"priority,omitempty"`
	// FleetTools names the fleet's tools (tool services on NATS) the
	// leader offers the model and runs itself; part of the dedupe key,
	// never sent upstream. Workers older than the field forward it to the
	// upstream: set it only once every worker understands it.
	FleetTools []string `json:"fleet_tools,omitempty"`

	Model               string          `json:"model,omitempty"`
	Messages            []Message       `json:"messages"`
	Temperature         *float64        `json:"temperature,omitempty"`
	TopP                *float64        `json:"top_p,omitempty"`
	MaxTokens           *int            `json:"max_tokens,omitempty"`
	MaxCompletionTokens *int            `json:"max_completion_tokens,omitempty"`
	Stop                Stop            `json:"stop,omitempty"`
	Seed                *int64          `json:"seed,omitempty"`
	PresencePenalty     *float64        `json:"presence_penalty,omitempty"`
	FrequencyPenalty    *float64        `json:"frequency_penalty,omitempty"`
	N                   *int            `json:"n,omitempty"`
	Tools               []Tool          `json:"tools,omitempty"`
	ToolChoice          json.RawMessage `json:"tool_choice,omitempty"`
	ParallelToolCalls   *bool           `json:"parallel_tool_calls,omitempty"`
	ResponseFormat      *ResponseFormat `json:"response_format,omitempty"`
	LogitBias           map[string]int  `json:"logit_bias,omitempty"`
	User                string          `json:"user,omitempty"`
	ReasoningEffort     string          `json:"reasoning_effort,omitempty"`

	// Extra holds every other top-level field, verbatim. Extra fields are
	// part of the dedupe key; see the README for which reach the upstream.
	Extra map[string]json.RawMessage `json:"-"`
}

// Message is one chat message.
type Message struct {
	Role       string     `json:"role"`
	Content    Content    `json:"content"`
	Name       string     `json:"name,omitempty"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

// Roles a message may have.
const (
	RoleSystem    = "system"
	RoleDeveloper = "developer"
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleTool      = "tool"
)

// Content is a message's content: a string, an array of parts, or null.
type Content struct {
	Text  string
	Parts []ContentPart
	// Null is true for JSON null or a missing content (assistant messages
	// that only call tools).
	Null bool
}

// ContentPart is one part of a multi-part message.
type ContentPart struct {
	Type     string    `json:"type"` // "text" or "image_url"
	Text     string    `json:"text,omitempty"`
	ImageURL *ImageURL `json:"image_url,omitempty"`
}

// ImageURL is an image reference in a content part.
type ImageURL struct {
	URL    string `json:"url"`
	Detail string `json:"detail,omitempty"`
}

// TextContent returns content holding s.
func TextContent(s string) Content { return Content{Text: s} }

// MarshalJSON writes a string, an array of parts, or null.
func (c Content) MarshalJSON() ([]byte, error) {
	switch {
	case c.Parts != nil:
		return json.Marshal(c.Parts)
	case c.Null:
		return []byte("null"), nil
	default:
		return json.Marshal(c.Text)
	}
}

// UnmarshalJSON reads a string, an array of parts, or null.
func (c *Content) UnmarshalJSON(b []byte) error {
	*c = Content{}
	switch {
	case string(b) == "null":
		c.Null = true
		return nil
	case len(b) > 0 && b[0] == '[':
		return json.Unmarshal(b, &c.Parts)
	default:
		return json.Unmarshal(b, &c.Text)
	}
}

// Stop is the "stop" parameter: one string or a list.
type Stop []string

// UnmarshalJSON reads a string or an array of strings.
func (s *Stop) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*s = Stop{one}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(s))
}

// Tool is a tool the model may call.
type Tool struct {
	Type     string       `json:"type"` // "function"
	Function FunctionSpec `json:"function"`
}

// FunctionSpec describes a callable function.
type FunctionSpec struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	Strict      bool            `json:"strict,omitempty"`
}

// ToolCall is a tool call in an assistant message, or a tool-call delta in
// a chunk event (then Index is set and the other fields are partial).
type ToolCall struct {
	Index    *int         `json:"index,omitempty"`
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type,omitempty"`
	Function FunctionCall `json:"function"`
}

// FunctionCall is the function a tool call invokes. In deltas, Arguments
// arrives in pieces to be concatenated.
type FunctionCall struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments,omitempty"`
}

// ResponseFormat is the "response_format" parameter.
type ResponseFormat struct {
	Type       string      `json:"type"` // "text", "json_object" or "json_schema"
	JSONSchema *JSONSchema `json:"json_schema,omitempty"`
}

// JSONSchema is a structured-output schema.
type JSONSchema struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Schema      json.RawMessage `json:"schema,omitempty"`
	Strict      bool            `json:"strict,omitempty"`
}

// jobPlain has Job's fields without its methods, for encoding/json.
type jobPlain Job

// knownJobFields are Job's JSON names, lower-cased: encoding/json matches
// keys case-insensitively, so Extra must too.
var knownJobFields = func() map[string]bool {
	known := map[string]bool{}
	t := reflect.TypeFor[jobPlain]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			known[strings.ToLower(name)] = true
		}
	}
	return known
}()

// UnmarshalJSON decodes a job, keeping unknown fields in Extra.
func (j *Job) UnmarshalJSON(b []byte) error {
	*j = Job{}
	if err := json.Unmarshal(b, (*jobPlain)(j)); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	for k, v := range all {
		if !knownJobFields[strings.ToLower(k)] {
			if j.Extra == nil {
				j.Extra = map[string]json.RawMessage{}
			}
			j.Extra[k] = v
		}
	}
	return nil
}

// MarshalJSON encodes a job with its Extra fields.
func (j Job) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(jobPlain(j))
	if err != nil || len(j.Extra) == 0 {
		return b, err
	}
	all := map[string]json.RawMessage{}
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, err
	}
	for k, v := range j.Extra {
		if !knownJobFields[strings.ToLower(k)] {
			all[k] = v
		}
	}
	return json.Marshal(all)
}

// DedupeOr reports whether the job may share a generation, using def when
// the job does not say.
func (j *Job) DedupeOr(def bool) bool {
	if j.Dedupe == nil {
		return def
	}
	return *j.Dedupe
}

// CacheOr reports whether the job may use the answer cache, using def when
// the job does not say.
func (j *Job) CacheOr(def bool) bool {
	if j.Cache == nil {
		return def
	}
	return *j.Cache
}

// Bool returns a pointer to b, for the optional fields of Job.
func Bool(b bool) *bool { return &b }

// Float returns a pointer to f, for the optional fields of Job.
func Float(f float64) *float64 { return &f }

// Int returns a pointer to i, for the optional fields of Job.
func Int(i int) *int { return &i }
