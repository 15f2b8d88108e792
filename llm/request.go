package llm

import (
	"encoding/json"

	openai "github.com/sashabaranov/go-openai"

	"github.com/chatfleet/chatfleet/protocol"
)

// emptyParameters stands in for a tool without parameters: go-openai
// would send "parameters": null, which the OpenAI API rejects.
var emptyParameters = json.RawMessage(`{"type":"object","properties":{}}`)

// buildRequest converts a job to go-openai's request, always streaming
// with usage. What go-openai cannot express (explicit zeros, job.Extra) is
// added to the body by rewriteBody.
func buildRequest(job *protocol.Job) openai.ChatCompletionRequest {
	req := openai.ChatCompletionRequest{
		Model:           job.Model,
		Messages:        make([]openai.ChatCompletionMessage, len(job.Messages)),
		Stop:            job.Stop,
		LogitBias:       job.LogitBias,
		User:            job.User,
		ReasoningEffort: job.ReasoningEffort,
		Stream:          true,
		StreamOptions:   &openai.StreamOptions{IncludeUsage: true},
	}
	for i, m := range job.Messages {
		req.Messages[i] = convertMessage(m)
	}
	if job.Temperature != nil {
		req.Temperature = float32(*job.Temperature)
	}
	if job.TopP != nil {
		req.TopP = float32(*job.TopP)
	}
	if job.PresencePenalty != nil {
		req.PresencePenalty = float32(*job.PresencePenalty)
	}
	if job.FrequencyPenalty != nil {
		req.FrequencyPenalty = float32(*job.FrequencyPenalty)
	}
	if job.MaxTokens != nil {
		req.MaxTokens = *job.MaxTokens
	}
	if job.MaxCompletionTokens != nil {
		req.MaxCompletionTokens = *job.MaxCompletionTokens
	}
	if job.Seed != nil {
		seed := int(*job.Seed)
		req.Seed = &seed
	}
	if job.N != nil {
		req.N = *job.N
	}
	req.Tools = convertTools(job.Tools)
	if len(job.ToolChoice) > 0 {
		req.ToolChoice = convertToolChoice(job.ToolChoice)
	}
	if job.ParallelToolCalls != nil {
		req.ParallelToolCalls = *job.ParallelToolCalls
	}
	if rf := job.ResponseFormat; rf != nil {
		req.ResponseFormat = convertResponseFormat(rf)
	}
	return req
}

// convertTools converts a job's tools; a function without parameters gets
// emptyParameters.
func convertTools(tools []protocol.Tool) []openai.Tool {
	var out []openai.Tool
	for _, t := range tools {
		params := t.Function.Parameters
		if len(params) == 0 {
			params = emptyParameters
		}
		out = append(out, openai.Tool{
			Type: openai.ToolType(t.Type),
			Function: &openai.FunctionDefinition{
				Name:        t.Function.Name,
				Description: t.Function.Description,
				Strict:      t.Function.Strict,
				Parameters:  params,
			},
		})
	}
	return out
}

// convertResponseFormat converts a job's response format. A json_schema
// without a schema keeps a nil Schema, which go-openai writes as null and
// rewriteBody removes.
func convertResponseFormat(rf *protocol.ResponseFormat) *openai.ChatCompletionResponseFormat {
	out := &openai.ChatCompletionResponseFormat{
		Type: openai.ChatCompletionResponseFormatType(rf.Type),
	}
	if js := rf.JSONSchema; js != nil {
		s := &openai.ChatCompletionResponseFormatJSONSchema{
			Name:        js.Name,
			Description: js.Description,
			Strict:      js.Strict,
		}
		if hasSchema(js) {
			s.Schema = js.Schema
		}
		out.JSONSchema = s
	}
	return out
}

func convertMessage(m protocol.Message) openai.ChatCompletionMessage {
	out := openai.ChatCompletionMessage{
		Role:       m.Role,
		Name:       m.Name,
		ToolCallID: m.ToolCallID,
	}
	switch {
	case m.Content.Parts != nil:
		out.MultiContent = make([]openai.ChatMessagePart, len(m.Content.Parts))
		for i, p := range m.Content.Parts {
			part := openai.ChatMessagePart{Type: openai.ChatMessagePartType(p.Type), Text: p.Text}
			if p.ImageURL != nil {
				part.ImageURL = &openai.ChatMessageImageURL{
					URL:    p.ImageURL.URL,
					Detail: openai.ImageURLDetail(p.ImageURL.Detail),
				}
			}
			out.MultiContent[i] = part
		}
	case m.Content.Null:
		// No content: an assistant message that only calls tools.
	default:
		out.Content = m.Content.Text
	}
	for _, tc := range m.ToolCalls {
		typ := tc.Type
		if typ == "" {
			typ = string(openai.ToolTypeFunction)
		}
		out.ToolCalls = append(out.ToolCalls, openai.ToolCall{
			ID:   tc.ID,
			Type: openai.ToolType(typ),
			Function: openai.FunctionCall{
				Name:      tc.Function.Name,
				Arguments: tc.Function.Arguments,
			},
		})
	}
	return out
}

// convertToolChoice returns "none", "auto", "required" or a
// {"type":"function","function":{"name":…}}; anything else is passed on
// verbatim for the upstream to judge.
func convertToolChoice(raw json.RawMessage) any {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var tc openai.ToolChoice
	if json.Unmarshal(raw, &tc) == nil && tc.Function.Name != "" {
		if tc.Type == "" {
			tc.Type = openai.ToolTypeFunction
		}
		return tc
	}
	return raw
}
