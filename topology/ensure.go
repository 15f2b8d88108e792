package topology

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Topology holds handles to every resource, ready to use.
type Topology struct {
	Config      Config
	Jobs        jetstream.Stream
	Replies     jetstream.Stream
	DeadLetters jetstream.Stream
	Inflight    jetstream.KeyValue
	Cache       jetstream.KeyValue
	Cancels     jetstream.KeyValue
	APIKeys     jetstream.KeyValue
	Tenants     jetstream.KeyValue
	Upstreams   jetstream.KeyValue
}

// Ensure creates what is missing and checks what exists. An existing
// resource with a different configuration is an error (*MismatchError)
// naming every difference; Ensure never changes it, except to add the
// fleet's queue timeout and per-tenant cap to a jobs stream created
// without them. A jobs stream of an older layout is a *LayoutError:
// PlanMigration migrates it. The consumers of the jobs come later, one
// per tenant and priority, as jobs arrive (Queue).
func Ensure(ctx context.Context, js jetstream.JetStream, cfg Config) (*Topology, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Topology{Config: cfg}
	var err error
	if t.Jobs, err = ensureStream(ctx, js, jobsStream(cfg)); err != nil {
		return nil, err
	}
	if t.Jobs, err = ensureQueueTimeout(ctx, js, t.Jobs, cfg.QueueTimeout); err != nil {
		return nil, err
	}
	if t.Jobs, err = ensureMaxQueuedPerTenant(ctx, js, t.Jobs, cfg.MaxQueuedPerTenant); err != nil {
		return nil, err
	}
	if err := t.checkQueues(ctx); err != nil {
		return nil, err
	}
	if t.Replies, err = ensureStream(ctx, js, repliesStream(cfg)); err != nil {
		return nil, err
	}
	if t.DeadLetters, err = ensureStream(ctx, js, deadLetterStream(cfg)); err != nil {
		return nil, err
	}
	buckets := []struct {
		dst *jetstream.KeyValue
		cfg jetstream.KeyValueConfig
	}{
		{&t.Inflight, inflightBucket(cfg)},
		{&t.Cache, cacheBucket(cfg)},
		{&t.Cancels, cancelBucket(cfg)},
		{&t.APIKeys, apiKeysBucket(cfg)},
		{&t.Tenants, tenantsBucket(cfg)},
		{&t.Upstreams, upstreamsBucket(cfg)},
	}
	for _, b := range buckets {
		if *b.dst, err = ensureBucket(ctx, js, b.cfg); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func jobsStream(c Config) jetstream.StreamConfig {
	s := jetstream.StreamConfig{
		Name:        c.Names.JobsStream(),
		Description: "chatfleet jobs, one per request; a consumer per tenant and priority",
		Subjects:    []string{c.Names.AllJobs(), c.Names.AllPriorityJobs()},
		// Headers only, so a worker learns which queue has work without
		// polling them all, and without receiving every job's body.
		RePublish:   &jetstream.RePublish{Source: ">", Destination: c.Names.QueuedJobs(), HeadersOnly: true},
		Retention:   jetstream.WorkQueuePolicy,
		MaxMsgs:     c.QueueLimit,
		MaxMsgSize:  c.MaxJobBytes,
		Discard:     jetstream.DiscardNew,
		Duplicates:  c.DuplicateWindow,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		AllowDirect: true,
		Metadata: map[string]string{
			MetadataQueueTimeout:       formatQueueTimeout(c.QueueTimeout),
			MetadataMaxQueuedPerTenant: formatMaxQueued(c.MaxQueuedPerTenant),
			MetadataLayout:             LayoutQueues,
		},
	}
	setMaxQueuedPerTenant(&s, c.MaxQueuedPerTenant)
	return s
}

func repliesStream(c Config) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        c.Names.RepliesStream(),
		Description: "chatfleet reply events and shared generations, readable from the first event",
		// Workers write reply events to <prefix>.write.…; the stream stores
		// them and republishes each stored one on <prefix>.reply.…, so live
		// readers see exactly the stored events, in order.
		Subjects:  []string{c.Names.AllReplyWrites(), c.Names.AllGens()},
		RePublish: &jetstream.RePublish{Source: c.Names.AllReplyWrites(), Destination: c.Names.AllReplies()},
		Retention: jetstream.LimitsPolicy,
		MaxAge:    c.ReplyMaxAge,
		MaxBytes:  c.ReplyMaxBytes,
		// Readers that recover a reply (after a reconnect, say) and
		// followers open ordered consumers here; the server's default cap
		// of 1,000 per stream is too low for a fleet in a hurry.
		MaxConsumers: 100_000,
		Discard:      jetstream.DiscardOld,
		Storage:      jetstream.FileStorage,
		Replicas:     c.Replicas,
		AllowDirect:  true,
	}
}

func deadLetterStream(c Config) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        c.Names.DeadLetterStream(),
		Description: "chatfleet dead letters: jobs terminated as invalid or after too many deliveries, with the reason in headers",
		Subjects:    []string{c.Names.AllDeadLetters()},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      c.DeadLetterMaxAge,
		Discard:     jetstream.DiscardOld,
		Duplicates:  2 * time.Minute,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		AllowDirect: true,
	}
}

func inflightBucket(c Config) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      c.Names.InflightBucket(),
		Description: "chatfleet leader leases of in-flight generations",
		TTL:         c.LeaseTTL,
		// File storage although leases live for seconds: a memory stream
		// does not survive a server restart at all, bucket included.
		Storage:  jetstream.FileStorage,
		Replicas: c.Replicas,
	}
}

func cacheBucket(c Config) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:       c.Names.CacheBucket(),
		Description:  "chatfleet finished answers by dedupe key",
		TTL:          c.CacheTTL,
		MaxValueSize: c.CacheMaxValueBytes,
		Storage:      jetstream.FileStorage,
		Replicas:     c.Replicas,
	}
}

func cancelBucket(c Config) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      c.Names.CancelBucket(),
		Description: "chatfleet cancel requests by tenant.id",
		TTL:         c.CancelTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
	}
}

func tenantsBucket(c Config) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      c.Names.TenantsBucket(),
		Description: "chatfleet tenants: limits and state by tenant; fleet-wide token windows by <tenant>.tokens",
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
	}
}

func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.CreateStream(ctx, want)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return nil, fmt.Errorf("topology: create stream %s: %w", want.Name, err)
	}
	s, err = js.Stream(ctx, want.Name)
	if err != nil {
		return nil, fmt.Errorf("topology: stream %s: %w", want.Name, err)
	}
	if want.Metadata[MetadataLayout] != "" {
		if err := checkLayout(s.CachedInfo().Config); err != nil {
			return nil, err
		}
	}
	if err := streamDiffs(s.CachedInfo().Config, want); err != nil {
		return nil, err
	}
	return s, nil
}

func ensureConsumer(ctx context.Context, s jetstream.Stream, want jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	c, err := s.CreateConsumer(ctx, want)
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, jetstream.ErrConsumerExists) {
		return nil, fmt.Errorf("topology: create consumer %s: %w", want.Durable, err)
	}
	c, err = s.Consumer(ctx, want.Durable)
	if err != nil {
		return nil, fmt.Errorf("topology: consumer %s: %w", want.Durable, err)
	}
	if err := consumerDiffs(c.CachedInfo().Config, want); err != nil {
		return nil, err
	}
	return c, nil
}

func ensureBucket(ctx context.Context, js jetstream.JetStream, want jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.CreateKeyValue(ctx, want)
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketExists) {
		return nil, fmt.Errorf("topology: create bucket %s: %w", want.Bucket, err)
	}
	kv, err = js.KeyValue(ctx, want.Bucket)
	if err != nil {
		return nil, fmt.Errorf("topology: bucket %s: %w", want.Bucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("topology: bucket %s: %w", want.Bucket, err)
	}
	if err := bucketDiffs(st, want); err != nil {
		return nil, err
	}
	return kv, nil
}

func apiKeysBucket(c Config) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      c.Names.APIKeysBucket(),
		Description: "chatfleet gateway API keys: a key's SHA-256 (hex) to its tenant",
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
	}
}
