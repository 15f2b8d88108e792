// Package manager decides what happens to a request inside a worker: it
// decodes and validates the job, finds or starts the generation that will
// answer it, relays that generation's events onto the request's own reply
// subject, and ends every request with exactly one terminal event.
//
// # Generations
//
// A generation is one answer in the making, shared by every request with
// the same dedupe key (see Key). Inside one worker, identical requests
// join the same generation in memory. Across the fleet, the in-flight
// key-value bucket elects one leader per key: the worker whose Create
// succeeds calls the upstream; the others follow it by reading the
// generation's events from the replies stream. A generation is served
// from the answer cache when a finished answer exists.
//
// Requests never call the upstream themselves: they subscribe to a
// generation's event log, which keeps the whole history, so a late joiner
// reads from the first event and a slow reader never slows anyone else.
//
// # Slots
//
// A worker holds at most MaxConcurrentRequests requests that lead or are
// being routed, at most MaxConcurrentLLMStreams upstream streams, and at
// most MaxConcurrentFollowers requests that follow or read the cache.
// A request that turns out to be a follower gives its request slot back,
// so followers cannot starve leaders.
package manager
