package topology

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"
)

// MetadataMaxQueuedPerTenant is the jobs stream's metadata key that holds
// the fleet's per-tenant cap on jobs in the stream ("0" for none). Its
// presence says the fleet has decided the cap: a stream created by an
// older version has no per-subject limit and no key, and the first new
// process adds both.
const MetadataMaxQueuedPerTenant = "chatfleet.max_queued_per_tenant"

// formatMaxQueued spells a cap as it is stored; none (≤ 0) is "0".
func formatMaxQueued(n int64) string { return strconv.FormatInt(max(n, 0), 10) }

// setMaxQueuedPerTenant sets a jobs stream's per-subject limit for cap n:
// each tenant publishes on a subject of its own, so the stream refuses a
// tenant's job beyond n and takes the others'.
func setMaxQueuedPerTenant(s *jetstream.StreamConfig, n int64) {
	if n > 0 {
		s.MaxMsgsPerSubject, s.DiscardNewPerSubject = n, true
	} else {
		s.MaxMsgsPerSubject, s.DiscardNewPerSubject = 0, false
	}
}

// ensureMaxQueuedPerTenant checks the fleet's per-tenant cap stored with
// the jobs stream s against want, as ensureQueueTimeout checks the queue
// timeout. A stream created by an older version (no metadata key) gets the
// cap and the key added, and nothing else changes; it is refused first if
// a tenant already has more jobs queued than the cap, since the server
// would delete that tenant's oldest jobs down to the cap. A stored value,
// or a per-subject limit, that differs from want is a *MismatchError.
//
// Like the queue timeout's, the update is not compare-and-swap: the stream
// is read back after it, and a process that finds another value refuses.
// Between the count and the update a tenant could go over the cap; the
// server would then drop its oldest jobs beyond it (see the README).
func ensureMaxQueuedPerTenant(ctx context.Context, js jetstream.JetStream, s jetstream.Stream, want int64) (jetstream.Stream, error) {
	cfg := s.CachedInfo().Config
	if _, ok := cfg.Metadata[MetadataMaxQueuedPerTenant]; !ok {
		if err := checkNoneOver(ctx, s, want); err != nil {
			return nil, err
		}
		cfg.Metadata = maps.Clone(cfg.Metadata)
		if cfg.Metadata == nil {
			cfg.Metadata = map[string]string{}
		}
		cfg.Metadata[MetadataMaxQueuedPerTenant] = formatMaxQueued(want)
		setMaxQueuedPerTenant(&cfg, want)
		var err error
		if s, err = js.UpdateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("topology: add the per-tenant cap to stream %s: %w", cfg.Name, err)
		}
		info, err := s.Info(ctx) // what the stream holds now, not what this update wrote
		if err != nil {
			return nil, fmt.Errorf("topology: stream %s: %w", cfg.Name, err)
		}
		cfg = info.Config
	}
	return s, maxQueuedDiffs(cfg, want)
}

// checkNoneOver refuses a cap that a tenant's jobs in stream s exceed.
func checkNoneOver(ctx context.Context, s jetstream.Stream, limit int64) error {
	if limit <= 0 {
		return nil
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		return fmt.Errorf("topology: count the jobs per tenant in stream %s: %w", s.CachedInfo().Config.Name, err)
	}
	var over []string
	for subject, n := range info.State.Subjects {
		if int64(n) > limit {
			over = append(over, fmt.Sprintf("%s holds %d", subject, n))
		}
	}
	if len(over) == 0 {
		return nil
	}
	slices.Sort(over)
	return fmt.Errorf("topology: cannot add a per-tenant cap of %d jobs to stream %s: %v; the server would delete the oldest "+
		"jobs beyond it. Start with a higher cap (CHATFLEET_MAX_QUEUED_PER_TENANT), or once the queue has drained",
		limit, info.Config.Name, over)
}

// maxQueuedDiffs compares a jobs stream's stored cap and its per-subject
// limit with want.
func maxQueuedDiffs(cfg jetstream.StreamConfig, want int64) error {
	wantS := formatMaxQueued(want)
	stored := cfg.Metadata[MetadataMaxQueuedPerTenant]
	var d differ
	d.check("metadata."+MetadataMaxQueuedPerTenant, stored, wantS)
	if len(d.diffs) == 0 {
		// The stored value is the fleet's; the limit itself may have been
		// edited apart from it.
		var wantCfg jetstream.StreamConfig
		setMaxQueuedPerTenant(&wantCfg, want)
		d.check("max_msgs_per_subject", formatMaxQueued(cfg.MaxMsgsPerSubject), formatMaxQueued(wantCfg.MaxMsgsPerSubject))
		d.check("discard_new_per_subject", cfg.DiscardNewPerSubject, wantCfg.DiscardNewPerSubject)
	}
	return d.mismatch("stream", cfg.Name)
}
