package subjects

import (
	"strconv"
	"strings"
)

// DefaultPrefix is the subject prefix used when none is configured.
const DefaultPrefix = "chat"

// Names builds and parses every subject, stream, consumer and bucket name
// for one prefix. The zero value is not usable; use New or Default.
type Names struct {
	prefix string // e.g. "chat" or "acme.chat"
	res    string // prefix as a resource-name part: "chat", "acme_chat"
}

// New returns the names for prefix: one or more '.'-separated tokens, each
// from [A-Za-z0-9_-].
func New(prefix string) (Names, error) {
	if prefix == "" {
		return Names{}, &NameError{Field: "prefix", Value: prefix, Reason: "empty"}
	}
	for _, tok := range strings.Split(prefix, ".") {
		if err := ValidName("prefix", tok); err != nil {
			return Names{}, &NameError{Field: "prefix", Value: prefix, Reason: "token " + err.(*NameError).Reason}
		}
	}
	return Names{prefix: prefix, res: strings.ReplaceAll(prefix, ".", "_")}, nil
}

// Default returns the names for DefaultPrefix.
func Default() Names {
	n, _ := New(DefaultPrefix)
	return n
}

// Prefix returns the subject prefix, e.g. "chat".
func (n Names) Prefix() string { return n.prefix }

// Jobs is the subject a tenant's jobs are published to: <prefix>.jobs.<tenant>.
func (n Names) Jobs(tenant string) string { return n.prefix + ".jobs." + tenant }

// AllJobs matches every tenant's jobs: <prefix>.jobs.>.
func (n Names) AllJobs() string { return n.prefix + ".jobs.>" }

// Reply is the subject a request's events are published to:
// <prefix>.reply.<tenant>.<id>.
func (n Names) Reply(tenant, id string) string { return n.prefix + ".reply." + tenant + "." + id }

// AllReplies matches every reply subject: <prefix>.reply.>.
func (n Names) AllReplies() string { return n.prefix + ".reply.>" }

// ReplyWrite is where a worker writes a request's events:
// <prefix>.write.<tenant>.<id>. The replies stream stores them there and
// republishes each one it stored, in order, on Reply. So readers of Reply
// see exactly the stored events: a write the stream refuses (from a writer
// that no longer owns the reply) never reaches them.
func (n Names) ReplyWrite(tenant, id string) string { return n.prefix + ".write." + tenant + "." + id }

// AllReplyWrites matches every ReplyWrite subject: <prefix>.write.>.
func (n Names) AllReplyWrites() string { return n.prefix + ".write.>" }

// Gen is the subject a leader mirrors a shared generation on, for followers
// on other workers: <prefix>.gen.<tenant>.<gen>.
func (n Names) Gen(tenant, gen string) string { return n.prefix + ".gen." + tenant + "." + gen }

// AllGens matches every generation subject: <prefix>.gen.>.
func (n Names) AllGens() string { return n.prefix + ".gen.>" }

// Control is the request subject a worker answers control messages on:
// <prefix>.ctl.<worker>.
func (n Names) Control(worker string) string { return n.prefix + ".ctl." + worker }

// DeadLetter is the subject a tenant's dead-lettered jobs are copied to:
// <prefix>.dlq.<tenant>.
func (n Names) DeadLetter(tenant string) string { return n.prefix + ".dlq." + tenant }

// AllDeadLetters matches every dead-letter subject: <prefix>.dlq.>.
func (n Names) AllDeadLetters() string { return n.prefix + ".dlq.>" }

// JobsStream names the work-queue stream of jobs, e.g. "CHAT_JOBS".
func (n Names) JobsStream() string { return strings.ToUpper(n.res) + "_JOBS" }

// RepliesStream names the stream capturing reply and generation events,
// e.g. "CHAT_REPLIES".
func (n Names) RepliesStream() string { return strings.ToUpper(n.res) + "_REPLIES" }

// DeadLetterStream names the dead-letter stream, e.g. "CHAT_DLQ".
func (n Names) DeadLetterStream() string { return strings.ToUpper(n.res) + "_DLQ" }

// WorkersConsumer names the durable pull consumer all workers share,
// e.g. "chat_workers".
func (n Names) WorkersConsumer() string { return n.res + "_workers" }

// InflightBucket names the key-value bucket of in-flight generations
// (leader leases), e.g. "chat_inflight".
func (n Names) InflightBucket() string { return n.res + "_inflight" }

// CacheBucket names the key-value bucket of finished answers, e.g. "chat_cache".
func (n Names) CacheBucket() string { return n.res + "_cache" }

// CancelBucket names the key-value bucket of cancel requests, e.g. "chat_cancels".
func (n Names) CancelBucket() string { return n.res + "_cancels" }

// APIKeysBucket names the key-value bucket of the gateway's API keys (a
// key's SHA-256 in hex → its tenant), e.g. "chat_api_keys".
func (n Names) APIKeysBucket() string { return n.res + "_api_keys" }

// Buckets names every key-value bucket of the fleet.
func (n Names) Buckets() []string {
	return []string{n.InflightBucket(), n.CacheBucket(), n.CancelBucket(), n.APIKeysBucket(), n.TenantsBucket(), n.UpstreamsBucket()}
}

// CancelSubject is the subject a put of the cancel request of tenant/id
// is published on: $KV.<cancel bucket>.<tenant>.<id>. Publishing there
// with a JetStream ack is a key-value put without a bucket lookup.
func (n Names) CancelSubject(tenant, id string) string {
	return "$KV." + n.CancelBucket() + "." + n.RequestKey(tenant, id)
}

// TenantsBucket names the key-value bucket of tenants' limits and state
// (and their token windows), e.g. "chat_tenants".
func (n Names) TenantsBucket() string { return n.res + "_tenants" }

// TenantKey is the tenants bucket's key of a tenant's limits and state: the
// tenant name itself, one token.
func (n Names) TenantKey(tenant string) string { return tenant }

// AllTenantKeys matches every TenantKey (and nothing else in the bucket):
// one token, "*".
func (n Names) AllTenantKeys() string { return "*" }

// TenantTokensKey is the tenants bucket's key of a tenant's token windows
// (tokens used this minute and this day, fleet-wide): <tenant>.tokens.
func (n Names) TenantTokensKey(tenant string) string { return tenant + ".tokens" }

// TenantShareKey is the in-flight bucket's key of share i of a tenant's
// in-flight limit: _shares.tenant.<tenant>.<i>. It has four tokens, so it
// is never a dedupe key (two tokens) or the maintainer's lease (one).
func (n Names) TenantShareKey(tenant string, i int) string {
	return "_shares.tenant." + tenant + "." + strconv.Itoa(i)
}

// TenantShares matches every share of a tenant's in-flight limit:
// _shares.tenant.<tenant>.*.
func (n Names) TenantShares(tenant string) string { return "_shares.tenant." + tenant + ".*" }

// RequestKey is the key-value key of one request: <tenant>.<id>. Cancel
// requests are stored under it.
func (n Names) RequestKey(tenant, id string) string { return tenant + "." + id }

// GatewayResumed is where a gateway says it resumed a request's stream,
// so the gateway whose client dropped it does not cancel the request.
func (n Names) GatewayResumed(tenant, id string) string {
	return n.prefix + ".gateway.resumed." + tenant + "." + id
}

// DedupeKey is the key-value key of one dedupe key in a tenant:
// <tenant>.<hash>. The hash already covers the tenant; the prefix keeps
// a tenant's keys together for operators.
func (n Names) DedupeKey(tenant, hash string) string { return tenant + "." + hash }

// PriorityJobs is the subject a tenant's high- or low-priority jobs are
// published to: <prefix>.pjobs.<tenant>.<priority>. Normal jobs stay on
// Jobs. A separate root, not Jobs plus a token: a jobs stream of the
// layout before priorities does not store it, so a producer publishing
// there is refused at once (no responders) instead of having a worker
// that knows nothing of priorities take the job (see the README's
// Upgrades).
func (n Names) PriorityJobs(tenant, priority string) string {
	return n.prefix + ".pjobs." + tenant + "." + priority
}

// AllPriorityJobs matches every PriorityJobs subject: <prefix>.pjobs.*.*.
func (n Names) AllPriorityJobs() string { return n.prefix + ".pjobs.*.*" }

// QueuedJobs is where the jobs stream announces each job it stored, headers
// only: <prefix>.queued.<the job's subject>. Workers listen to learn which
// tenant's queue has work without polling every queue.
func (n Names) QueuedJobs() string { return n.prefix + ".queued.>" }

// QueueConsumer names the durable pull consumer of one tenant's jobs of
// one priority ("high", "normal" or "low"), e.g. "chat_q_acme_normal".
// Workers create these as jobs arrive; the priority is always the last
// part, so two tenants' names never collide.
func (n Names) QueueConsumer(tenant, priority string) string {
	return n.res + "_q_" + tenant + "_" + priority
}

// QueueConsumerPrefix starts every QueueConsumer name, e.g. "chat_q_".
func (n Names) QueueConsumerPrefix() string { return n.res + "_q_" }

// TenantJobs are the filters matching every job of a tenant, of every
// priority: Jobs and PriorityJobs(tenant, "*").
func (n Names) TenantJobs(tenant string) []string {
	return []string{n.Jobs(tenant), n.PriorityJobs(tenant, "*")}
}
