// Package protocol defines chatfleet's wire protocol, version 1: the job a
// producer publishes and the events a worker publishes back. It depends on
// the standard library and chatfleet's subjects package (names and their
// rules) only, so any Go program that reads reply subjects can use it.
//
// # Jobs
//
// A job is an OpenAI chat-completions request body plus chatfleet's own
// fields (v, id, tenant, dedupe, cache, timeout_ms), published to
// <prefix>.jobs.<tenant> with the Nats-Msg-Id header set to
// <tenant>.<id> (MsgID):
//
//	{"v":1,"id":"r1","tenant":"default","model":"gpt-4o-mini",
//	 "messages":[{"role":"user","content":"hello"}]}
//
// Fields chatfleet does not model are kept in Job.Extra: they count for the
// dedupe key, so two jobs that differ in any field never share an answer.
//
// # Events
//
// A worker answers on <prefix>.reply.<tenant>.<id> with one JSON event per
// message, numbered by seq from 1:
//
//	{"v":1,"id":"r1","seq":1,"type":"meta","worker":"w1","role":"leader"}
//	{"v":1,"id":"r1","seq":2,"type":"chunk","content":"Hel"}
//	{"v":1,"id":"r1","seq":3,"type":"chunk","content":"lo"}
//	{"v":1,"id":"r1","seq":4,"type":"done","finish_reason":"stop",...}
//
// Every request ends with exactly one terminal event: done, error or
// cancelled. A reset event means "discard the output so far"; it follows a
// failover, and the new output follows it. A progress event says what a
// request waits for before its first output; it carries no output.
//
// # Extending version 1
//
// New event types, fields and error codes may appear within version 1. A
// client ignores event types and fields it does not know and treats an
// unknown error code like CodeInternal.
package protocol
