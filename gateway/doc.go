// Package gateway is an OpenAI-compatible HTTP front for a chatfleet: it
// turns chat-completions requests into jobs (a producer on NATS like any
// other, through the publisher package) and the jobs' reply events back
// into OpenAI responses, so an application that speaks the OpenAI API —
// an official SDK, LangChain, curl — gets the fleet's dedupe, cache,
// retries and failover without changing a line.
//
// # Routes
//
//	POST /v1/chat/completions                 stream: true (SSE) or false (one chat.completion)
//	GET  /v1/chat/completions/{id}/stream     resume a stream after Last-Event-ID (or ?after=)
//	GET  /v1/models                           the models the fleet's workers serve
//
// Every SSE event carries an id from which a dropped stream resumes
// exactly, on any gateway replica, while the answer is generated or after
// it finished (within the replies stream's retention).
//
// The gateway keeps no state of its own: replicas behind a load balancer
// share the fleet's streams.
package gateway
