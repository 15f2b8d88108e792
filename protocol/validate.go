package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/chatfleet/chatfleet/subjects"
)

// Limits bound what a worker accepts. The zero value uses the defaults.
type Limits struct {
	// MaxJobBytes is the largest encoded job. Defaults to 1 MiB.
	MaxJobBytes int
	// MaxMessages is the most messages in one job. Defaults to 256.
	MaxMessages int
	// AllowedModels, when not empty, is the only models a job may name.
	AllowedModels []string
}

func (l Limits) withDefaults() Limits {
	if l.MaxJobBytes <= 0 {
		l.MaxJobBytes = 1 << 20
	}
	if l.MaxMessages <= 0 {
		l.MaxMessages = 256
	}
	return l
}

// Invalid returns an invalid_request error naming field.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Code: CodeInvalidRequest, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Normalize fills the defaults of an accepted job: version 1, the default
// tenant, and defaultModel when the job names no model.
func (j *Job) Normalize(defaultModel string) {
	if j.V == 0 {
		j.V = Version
	}
	if j.Tenant == "" {
		j.Tenant = DefaultTenant
	}
	if j.Model == "" {
		j.Model = defaultModel
	}
	if len(j.FleetTools) > 0 {
		// One spelling of one set: the order of the names never matters.
		slices.Sort(j.FleetTools)
		j.FleetTools = slices.Compact(j.FleetTools)
	}
}

// Validate checks a normalized job against the protocol and lim. The error
// is an *Error with CodeInvalidRequest naming the first offending field.
func (j *Job) Validate(lim Limits) error {
	lim = lim.withDefaults()
	if j.V != Version {
		return Invalid("v", "unsupported protocol version %d; this worker speaks %d", j.V, Version)
	}
	if err := subjects.ValidName("tenant", j.Tenant); err != nil {
		return Invalid("tenant", "%s", err.(*subjects.NameError).Reason)
	}
	if err := subjects.ValidName("id", j.ID); err != nil {
		return Invalid("id", "%s", err.(*subjects.NameError).Reason)
	}
	if j.TimeoutMS < 0 {
		return Invalid("timeout_ms", "must not be negative")
	}
	if j.QueueTimeoutMS < 0 {
		return Invalid("queue_timeout_ms", "must not be negative")
	}
	if j.Priority.Rank() < 0 {
		return Invalid("priority", "%q is not a priority: want high, normal or low", j.Priority)
	}
	if err := j.validateFleetTools(); err != nil {
		return err
	}
	if j.Model == "" {
		return Invalid("model", "required (no default model is configured)")
	}
	if len(lim.AllowedModels) > 0 && !slices.Contains(lim.AllowedModels, j.Model) {
		return Invalid("model", "model %q is not allowed here", j.Model)
	}
	if len(j.Messages) == 0 {
		return Invalid("messages", "at least one message is required")
	}
	if len(j.Messages) > lim.MaxMessages {
		return Invalid("messages", "%d messages; the limit is %d", len(j.Messages), lim.MaxMessages)
	}
	for i := range j.Messages {
		if err := j.Messages[i].validate(fmt.Sprintf("messages[%d]", i)); err != nil {
			return err
		}
	}
	if err := j.validateParams(); err != nil {
		return err
	}
	for i, t := range j.Tools {
		if err := t.validate(fmt.Sprintf("tools[%d]", i)); err != nil {
			return err
		}
	}
	if err := validateToolChoice(j.ToolChoice); err != nil {
		return err
	}
	return j.ResponseFormat.validate()
}

func (m *Message) validate(field string) error {
	switch m.Role {
	case RoleSystem, RoleDeveloper, RoleUser:
		if m.Content.Null {
			return Invalid(field+".content", "required for role %q", m.Role)
		}
	case RoleAssistant:
		if m.Content.Null && len(m.ToolCalls) == 0 {
			return Invalid(field+".content", "an assistant message needs content or tool_calls")
		}
	case RoleTool:
		if m.ToolCallID == "" {
			return Invalid(field+".tool_call_id", "required for role \"tool\"")
		}
	case "":
		return Invalid(field+".role", "required")
	default:
		return Invalid(field+".role", "unknown role %q; want system, developer, user, assistant or tool", m.Role)
	}
	for i, p := range m.Content.Parts {
		pf := fmt.Sprintf("%s.content[%d]", field, i)
		switch {
		case p.Type == "text":
		case p.Type == "image_url" && p.ImageURL != nil && p.ImageURL.URL != "":
		case p.Type == "image_url":
			return Invalid(pf+".image_url", "required for an image_url part")
		default:
			return Invalid(pf+".type", "unknown part type %q; want text or image_url", p.Type)
		}
	}
	return nil
}

func (j *Job) validateParams() error {
	ranges := []struct {
		field    string
		v        *float64
		min, max float64
	}{
		{"temperature", j.Temperature, 0, 2},
		{"top_p", j.TopP, 0, 1},
		{"presence_penalty", j.PresencePenalty, -2, 2},
		{"frequency_penalty", j.FrequencyPenalty, -2, 2},
	}
	for _, r := range ranges {
		if r.v != nil && (*r.v < r.min || *r.v > r.max) {
			return Invalid(r.field, "%v is out of range [%v, %v]", *r.v, r.min, r.max)
		}
	}
	if j.MaxTokens != nil && *j.MaxTokens < 1 {
		return Invalid("max_tokens", "must be at least 1")
	}
	if j.MaxCompletionTokens != nil && *j.MaxCompletionTokens < 1 {
		return Invalid("max_completion_tokens", "must be at least 1")
	}
	if j.N != nil && *j.N != 1 {
		return Invalid("n", "only n=1 is supported")
	}
	if len(j.Stop) > 4 {
		return Invalid("stop", "at most 4 stop sequences")
	}
	return nil
}

func (t *Tool) validate(field string) error {
	if t.Type != "function" {
		return Invalid(field+".type", "unknown tool type %q; want function", t.Type)
	}
	if !validFunctionName(t.Function.Name) {
		return Invalid(field+".function.name", "want 1 to 64 characters of [A-Za-z0-9_-]")
	}
	if p := bytes.TrimSpace(t.Function.Parameters); len(p) > 0 && p[0] != '{' {
		return Invalid(field+".function.parameters", "must be a JSON object")
	}
	return nil
}

func validFunctionName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	return subjects.ValidName("name", s) == nil
}

func validateToolChoice(raw json.RawMessage) error {
	if len(raw) == 0 {
		return nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s == "none" || s == "auto" || s == "required" {
			return nil
		}
		return Invalid("tool_choice", "unknown value %q; want none, auto, required or a function", s)
	}
	var obj struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil || obj.Type != "function" || obj.Function.Name == "" {
		return Invalid("tool_choice", `want none, auto, required or {"type":"function","function":{"name":…}}`)
	}
	return nil
}

func (r *ResponseFormat) validate() error {
	if r == nil {
		return nil
	}
	switch r.Type {
	case "text", "json_object":
		return nil
	case "json_schema":
		if r.JSONSchema == nil || r.JSONSchema.Name == "" {
			return Invalid("response_format.json_schema.name", "required for type json_schema")
		}
		return nil
	default:
		return Invalid("response_format.type", "unknown type %q; want text, json_object or json_schema", r.Type)
	}
}
