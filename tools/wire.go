package tools

import "encoding/json"

// ServiceName is the NATS micro service every tool server registers as:
// `nats micro info chatfleet-tools` lists the fleet's tools, and workers
// discover them from its $SRV.INFO answers.
const ServiceName = "chatfleet-tools"

// Metadata keys. The service carries MetadataPrefix (the fleet's subject
// prefix, so two fleets on one NATS never see each other's tools); each
// endpoint, one tool, carries the rest.
const (
	MetadataPrefix      = "prefix"
	MetadataDescription = "description"
	// MetadataParameters is the JSON schema of the tool's arguments, as a
	// JSON text.
	MetadataParameters = "parameters"
	// MetadataIdempotent is "false" for a tool that must not run twice for
	// one call (a takeover then fails the job instead of running it again).
	MetadataIdempotent = "idempotent"
)

// Request is the body of a call, published on <prefix>.tool.<name> with a
// reply subject (a NATS request).
type Request struct {
	// ID is the model's tool call ID.
	ID string `json:"id"`
	// Tenant is the tenant of the job the call is made for.
	Tenant string `json:"tenant"`
	// Arguments is the arguments as the model wrote them: JSON text, not
	// checked against the schema.
	Arguments string `json:"arguments"`
	// Output, when set, is the subject to stream output on while the call
	// runs (<prefix>.toolout.<call>); see Chunk.
	Output string `json:"output,omitempty"`
	// TimeoutMS is how long the caller waits for the reply.
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
	// MaxOutputBytes is the most output the caller uses; more is cut.
	MaxOutputBytes int `json:"max_output_bytes,omitempty"`
}

// Chunk is one piece of streamed output, published on Request.Output
// before the reply. Seq counts from 1 in each call; a gap means a chunk
// was lost (core NATS), and the reply still carries the whole output.
type Chunk struct {
	Seq  int    `json:"seq"`
	Text string `json:"text"`
}

// Reply is the body of the reply to a call: the whole output (what the
// model reads), cut at the request's MaxOutputBytes. A failed call
// replies with the micro error headers (Nats-Service-Error-Code: 400 for
// bad arguments, 500 for a failure, 503 when the server is busy, 504 when
// the call ran out of its time;
// Nats-Service-Error: the message) and a Reply whose Error repeats the
// message.
type Reply struct {
	Output    string `json:"output"`
	Truncated bool   `json:"truncated,omitempty"`
	Error     string `json:"error,omitempty"`
}

// Info is one tool as its service advertises it.
type Info struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Parameters  json.RawMessage `json:"parameters"`
	// Idempotent is false for a tool that must not run twice for a call.
	Idempotent bool `json:"idempotent"`
}
