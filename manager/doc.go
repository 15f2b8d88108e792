// Package manager decides what happens to a request inside a worker: it
// decodes and validates the job, finds or starts the hub that will answer
// it, relays the hub's answer onto the request's own reply subject, and
// ends every request with exactly one terminal event.
//
// # Words
//
// Read these first; the code uses each for one thing only.
//
//   - job: what a producer published to the jobs stream; a delivery is one
//     time the consumer handed it to a worker.
//   - request: one delivery of a job being answered on this worker
//     (request.go). Its request key is tenant.id, which names its reply
//     and its cancel.
//   - reply: the events of one request, stored on <prefix>.write.<tenant>.<id>
//     and republished on <prefix>.reply.<tenant>.<id>; its writer is one
//     request at a time (store.go).
//   - live: a job whose producer asked for its events at once
//     (protocol.HeaderLive): each event goes out on the reply subject at
//     once, and the events shown within StoreBatchDelay are stored
//     together, as one batch (live.go); epoch is the writing delivery's
//     number, carried by live and stored events.
//   - dedupe key: tenant.hash, where hash (Key) covers everything that
//     determines the answer. It names the cache entry and the lease.
//   - hub: where the requests on this worker that want the same answer
//     meet (hub.go); it keeps the answer's log (hublog.go), so a late
//     joiner reads from the first entry. The hub table (hubs.go) owns every
//     hub, by hub key: the dedupe key, with "/nocache" for jobs that may not
//     use the cache.
//   - generation: one attempt at the answer, named by a generation ID: led
//     here (this worker calls the upstream, lead.go), followed (another
//     worker leads; we read its generation subject, follow.go), or the
//     cached answer (no ID). A hub lives through one or more generations:
//     a follower that takes over from a dead leader starts a new one,
//     behind a reset. A leader that restarts a broken upstream stream stays
//     in its generation, also behind a reset.
//   - leader, follower, cache: the role a request is told in its meta
//     event; modeLeader, modeFollower and modeCache are a hub's.
//   - lease: the in-flight bucket's entry for a dedupe key, naming the
//     leading worker and generation (lease.go); the fleet's maintainer
//     holds one more, under a key no dedupe key can be (maintenance.go).
//   - upstream: the OpenAI-compatible server; an upstream stream is one
//     streamed completion from it (upstream.go).
//   - tenant limits: a tenant's entry in the tenants bucket — max_queued,
//     max_inflight, tokens per minute and day, paused, what to do at a
//     limit — mirrored on every worker (tenants.go) and applied where a
//     generation is about to call the upstream (quota.go), when a job is
//     pulled (pause.go) and by the maintainer (maintenance_quota.go).
//   - share: one unit of a fleet-wide limit, a key of the in-flight bucket
//     created with compare-and-swap and kept alive like a lease
//     (shares.go); a leader holds one of its tenant's while it calls the
//     upstream, when the tenant has a max_inflight, and one of the
//     upstream's, when it has a max_streams.
//   - upstream limits: an upstream's fleet-wide limits (max_streams,
//     requests and tokens per minute) and its backoff after a 429, in the
//     upstreams bucket, mirrored on every worker (upstreams.go) and
//     applied after the tenant's (fleetcap.go); route: one upstream a
//     leader may pick for a model (routes.go).
//   - parked: a job waiting for its tenant (paused, or at a limit) or for
//     the fleet's capacity holds a parked slot instead of its request
//     slot.
//   - superseded: another delivery of the same job now writes the reply;
//     unwanted: a hub no request, here or elsewhere, reads any more; given
//     up: a job the consumer delivered MaxDeliver times, dead-lettered.
//
// # Slots
//
// A worker pulls a job only with a request slot (Slots.Reserve); a request
// that turns out to follow or to read the cache trades it for a follower
// slot, and a leader that must wait for an upstream slot parks in a
// waiting slot, so the worker goes on serving cache hits and followers.
// A job that waits for its tenant parks in a parked slot, so the worker
// goes on pulling other tenants' jobs.
//
// # Locks
//
// hubTable.mu, then hub.pubMu, then hub.mu; fleetShares.mu, then a
// lease's mu; nothing else nests (tenantView.mu and usage.mu are taken
// alone).
package manager
