// Package topology creates chatfleet's JetStream streams, consumer and
// key-value buckets idempotently, and reports an existing resource whose
// configuration differs instead of overwriting it.
package topology

import (
	"fmt"
	"time"

	"github.com/chatfleet/chatfleet/internal/defaults"
	"github.com/chatfleet/chatfleet/subjects"
)

// Config sizes the topology. Each field's comment ends with its default.
type Config struct {
	// Names derives every name. Defaults to subjects.Default().
	Names subjects.Names
	// Replicas of every stream and bucket (1, 3 or 5). Defaults to 1.
	Replicas int
	// QueueLimit is the most jobs waiting in the jobs stream; a publish
	// beyond it fails (DiscardNew), which producers see as "queue full".
	// Defaults to 10000.
	QueueLimit int64
	// MaxJobBytes is the largest message the jobs stream stores: a backstop
	// well above the workers' own limit, so an oversized job still reaches
	// a worker, which answers it with an invalid_request error (a core
	// publish the stream refuses would vanish without a word). NATS's
	// max_payload (1 MiB by default) also applies. Defaults to 8 MiB.
	MaxJobBytes int32
	// DuplicateWindow is how long a request ID is remembered, so a retried
	// submit is stored once. Defaults to 2m.
	DuplicateWindow time.Duration
	// ReplyMaxAge is how long reply events stay readable. Defaults to 15m.
	ReplyMaxAge time.Duration
	// ReplyMaxBytes caps the replies stream; the oldest events go first.
	// Defaults to 1 GiB.
	ReplyMaxBytes int64
	// AckWait is how long a worker may hold a job without signs of life
	// before it is redelivered. Defaults to 30s.
	AckWait time.Duration
	// MaxDeliver is how often a job is delivered before it is given up.
	// Defaults to 5.
	MaxDeliver int
	// MaxAckPending caps the jobs of one queue (a tenant's jobs of one
	// priority) in flight across the fleet (followers count). Defaults to
	// 20000.
	MaxAckPending int
	// QueueTimeout ends a job still waiting in the queue after this long
	// with queue_timeout (a job's queue_timeout_ms may shorten it). One
	// value for the whole fleet: it is stored in the jobs stream's metadata
	// (MetadataQueueTimeout) when the stream is created, or added to a
	// stream created by an older version; a process configured with
	// another value is refused (*MismatchError). Negative disables.
	// Defaults to 5m.
	QueueTimeout time.Duration
	// MaxQueuedPerTenant caps each tenant's jobs in the jobs stream
	// (waiting, or pulled and not yet acked): the stream refuses a
	// tenant's publish beyond it (MaxMsgsPerSubject with
	// DiscardNewPerSubject), which producers see as quota_exceeded. One
	// value for the fleet, stored in the jobs stream's metadata
	// (MetadataMaxQueuedPerTenant) and added to a stream created by an
	// older version; a tenant's own max_queued (the tenants bucket) can
	// only lower it. 0 or negative: no cap. Defaults to 0.
	MaxQueuedPerTenant int64
	// LeaseTTL is the leader lease: a leader that does not renew within it
	// loses its generation to a follower. Defaults to 10s.
	LeaseTTL time.Duration
	// CacheTTL is how long a finished answer is served from the cache.
	// Defaults to 24h.
	CacheTTL time.Duration
	// CacheMaxValueBytes is the largest cached answer. Defaults to 1 MiB.
	CacheMaxValueBytes int32
	// CancelTTL is how long a cancel request is remembered, so a job still
	// queued is cancelled when pulled. Defaults to 1h.
	CancelTTL time.Duration
	// DeadLetterMaxAge is how long dead-lettered jobs are kept for
	// inspection and replay. Defaults to 7 days.
	DeadLetterMaxAge time.Duration
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Names == (subjects.Names{}) {
		c.Names = subjects.Default()
	}
	defaults.Set(&c.Replicas, 1)
	defaults.Set(&c.QueueLimit, 10000)
	defaults.Set(&c.MaxJobBytes, 8<<20)
	defaults.Set(&c.DuplicateWindow, 2*time.Minute)
	defaults.Set(&c.ReplyMaxAge, 15*time.Minute)
	defaults.Set(&c.ReplyMaxBytes, 1<<30)
	defaults.Set(&c.AckWait, 30*time.Second)
	defaults.Set(&c.MaxDeliver, 5)
	defaults.Set(&c.MaxAckPending, 20000)
	defaults.Set(&c.QueueTimeout, 5*time.Minute)
	defaults.Set(&c.LeaseTTL, 10*time.Second)
	defaults.Set(&c.CacheTTL, 24*time.Hour)
	defaults.Set(&c.CacheMaxValueBytes, 1<<20)
	defaults.Set(&c.CancelTTL, time.Hour)
	defaults.Set(&c.DeadLetterMaxAge, 7*24*time.Hour)
	return c
}

// Validate reports the first invalid field of a defaulted config.
func (c Config) Validate() error {
	switch {
	case c.Replicas != 1 && c.Replicas != 3 && c.Replicas != 5:
		return fmt.Errorf("topology: replicas must be 1, 3 or 5, got %d", c.Replicas)
	case c.QueueLimit < 1:
		return fmt.Errorf("topology: queue limit must be positive, got %d", c.QueueLimit)
	case c.AckWait < time.Second:
		return fmt.Errorf("topology: ack wait must be at least 1s, got %s", c.AckWait)
	case c.MaxDeliver < 1 && c.MaxDeliver != -1:
		return fmt.Errorf("topology: max deliver must be positive or -1, got %d", c.MaxDeliver)
	case c.LeaseTTL < time.Second:
		return fmt.Errorf("topology: lease TTL must be at least 1s, got %s", c.LeaseTTL)
	case c.DuplicateWindow > c.ReplyMaxAge:
		return fmt.Errorf("topology: duplicate window %s must not exceed reply max age %s", c.DuplicateWindow, c.ReplyMaxAge)
	}
	return nil
}
