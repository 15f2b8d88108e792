package topology

import "github.com/nats-io/nats.go/jetstream"

// upstreamsBucket holds each upstream's fleet-wide limits (under its
// name), the minute window of its requests and tokens (<name>.window) and
// the fleet's backoff after a 429 (<name>.backoff). Workers of versions
// before it neither create nor read it: they ignore the fleet's limits.
func upstreamsBucket(c Config) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      c.Names.UpstreamsBucket(),
		Description: "chatfleet upstreams: fleet-wide limits by upstream; <upstream>.window and <upstream>.backoff",
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
	}
}
