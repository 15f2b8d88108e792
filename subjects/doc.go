// Package subjects names everything chatfleet puts on NATS: subjects, streams,
// the workers' consumer and the key-value buckets, all derived from one
// configurable prefix (default "chat").
//
// Keeping every name in one place means a job can never steer a worker to
// publish somewhere else: reply subjects are built here from a validated
// tenant and request ID, never taken from the job.
//
// # Subjects
//
//	chat.jobs.<tenant>           jobs (JetStream, work queue), normal priority
//	chat.pjobs.<tenant>.<prio>   high and low priority jobs
//	chat.queued.<job subject>    the jobs stream's announcement of a stored job (headers only)
//	chat.write.<tenant>.<id>     where a worker writes a request's events (stored by a stream)
//	chat.reply.<tenant>.<id>     reply events of one request: the stored ones, republished in order
//	chat.gen.<tenant>.<gen>      events of one shared generation (leader → followers)
//	chat.ctl.<worker>            control requests to one worker (join/leave a generation)
//	chat.dlq.<tenant>            dead letters
//
// # Buckets and their keys
//
//	chat_inflight   <tenant>.<hash> leader leases; _maintenance; _shares.tenant.<tenant>.<i> in-flight shares
//	chat_cache      <tenant>.<hash> finished answers
//	chat_cancels    <tenant>.<id> cancel requests
//	chat_tenants    <tenant> limits and state; <tenant>.tokens token windows
//
// # Names
//
// Tenants and request IDs are 1 to 128 characters of [A-Za-z0-9_-], so they
// are valid NATS tokens, valid key-value keys and safe in URLs and logs.
//
//	n := subjects.Default()
//	n.Reply("acme", "r1") // "chat.reply.acme.r1"
//	tenant, id, err := n.ParseReply("chat.reply.acme.r1")
package subjects
