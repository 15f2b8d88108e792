package llm

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"

	"github.com/chatfleet/chatfleet/protocol"
)

// protectedFields are the body fields job.Extra never overrides: the
// client's choice of model, messages and streaming.
var protectedFields = map[string]bool{
	"model": true, "messages": true, "stream": true, "stream_options": true,
}

// errBodyShape refuses a body that is valid JSON but not the object
// go-openai writes: JSON null decodes into a nil map without an error.
var errBodyShape = errors.New("llm: request body is not a chat-completions object")

// rewriteBody fixes what go-openai cannot express in the chat-completions
// body b it marshalled from job:
//   - float32 `omitempty` drops an explicit 0 (then the upstream samples at
//     its default, 1.0): every sampling parameter the job set is written
//     with the job's exact value;
//   - `omitempty` drops an empty string content (or empty parts), making a
//     message without content: the job's content is written back;
//   - a json_schema response format without a schema would be sent with
//     "schema": null, which upstreams reject: the key is removed;
//   - job.Extra is not modelled: its fields are merged in, except
//     protectedFields (compared case-insensitively).
//
// A body that needs none of this is returned unchanged.
func rewriteBody(b []byte, job *protocol.Job) ([]byte, error) {
	if !needsRewrite(job) {
		return b, nil
	}
	floats := samplingFloats(job)
	empty, noSchema := emptyContents(job), schemaless(job)
	var body map[string]json.RawMessage
	if err := json.Unmarshal(b, &body); err != nil {
		return nil, err
	}
	if body == nil {
		return nil, errBodyShape
	}
	for _, f := range floats {
		if f.v != nil {
			v, err := json.Marshal(*f.v)
			if err != nil {
				return nil, err
			}
			body[f.key] = v
		}
	}
	if empty {
		msgs, err := restoreContents(body["messages"], job.Messages)
		if err != nil {
			return nil, err
		}
		body["messages"] = msgs
	}
	if noSchema {
		rf, err := dropNullSchema(body["response_format"])
		if err != nil {
			return nil, err
		}
		body["response_format"] = rf
	}
	for k, v := range job.Extra {
		if !protectedFields[strings.ToLower(k)] {
			body[k] = v
		}
	}
	return json.Marshal(body)
}

// needsRewrite reports whether rewriteBody changes the body for job.
func needsRewrite(job *protocol.Job) bool {
	needed := len(job.Extra) > 0 || emptyContents(job) || schemaless(job)
	for _, f := range samplingFloats(job) {
		needed = needed || f.v != nil
	}
	return needed
}

// samplingFloat is a sampling parameter the job may set.
type samplingFloat struct {
	key string
	v   *float64
}

func samplingFloats(job *protocol.Job) [4]samplingFloat {
	return [4]samplingFloat{
		{"temperature", job.Temperature},
		{"top_p", job.TopP},
		{"presence_penalty", job.PresencePenalty},
		{"frequency_penalty", job.FrequencyPenalty},
	}
}

// emptyContents reports whether a message has content go-openai omits: an
// empty string or an empty list of parts.
func emptyContents(job *protocol.Job) bool {
	for _, m := range job.Messages {
		if isEmptyContent(m.Content) {
			return true
		}
	}
	return false
}

func isEmptyContent(c protocol.Content) bool {
	return !c.Null && len(c.Parts) == 0 && c.Text == ""
}

// restoreContents writes the job's content into every marshalled message
// that has empty content.
func restoreContents(raw json.RawMessage, jobMsgs []protocol.Message) (json.RawMessage, error) {
	var msgs []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &msgs); err != nil {
		return nil, err
	}
	for i := range msgs {
		if i < len(jobMsgs) && isEmptyContent(jobMsgs[i].Content) {
			if msgs[i] == nil {
				return nil, errBodyShape
			}
			c, err := json.Marshal(jobMsgs[i].Content)
			if err != nil {
				return nil, err
			}
			msgs[i]["content"] = c
		}
	}
	return json.Marshal(msgs)
}

// schemaless reports a json_schema response format without a schema.
func schemaless(job *protocol.Job) bool {
	rf := job.ResponseFormat
	return rf != nil && rf.JSONSchema != nil && !hasSchema(rf.JSONSchema)
}

// hasSchema reports whether js has a schema: absent and null are none.
func hasSchema(js *protocol.JSONSchema) bool {
	s := bytes.TrimSpace(js.Schema)
	return len(s) > 0 && !bytes.Equal(s, []byte("null"))
}

// dropNullSchema removes json_schema.schema from a marshalled
// response_format.
func dropNullSchema(rf json.RawMessage) (json.RawMessage, error) {
	var format map[string]json.RawMessage
	if err := json.Unmarshal(rf, &format); err != nil {
		return nil, err
	}
	var schema map[string]json.RawMessage
	if err := json.Unmarshal(format["json_schema"], &schema); err != nil {
		return nil, err
	}
	delete(schema, "schema")
	b, err := json.Marshal(schema)
	if err != nil {
		return nil, err
	}
	format["json_schema"] = b
	return json.Marshal(format)
}
