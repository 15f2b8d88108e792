package topology

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// MetadataQueueTimeout is the jobs stream's metadata key that holds the
// fleet's queue timeout as a Go duration ("5m0s"); "0s" means none. Every
// worker reads it from there, so workers cannot disagree about it.
const MetadataQueueTimeout = "chatfleet.queue_timeout"

// formatQueueTimeout spells d as it is stored; none (≤ 0) is "0s".
func formatQueueTimeout(d time.Duration) string {
	return max(d, 0).String()
}

// parseQueueTimeout reads a stored queue timeout; 0 means none.
func parseQueueTimeout(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("topology: %s %q is not a duration of 0 or more", MetadataQueueTimeout, s)
	}
	return d, nil
}

// ensureQueueTimeout checks the fleet's queue timeout stored with the jobs
// stream s against want. A stream created by a version without it (a fleet
// upgrading one worker at a time) gets want added to its metadata, and
// nothing else changes. A stored value that differs from want is a
// *MismatchError: like every other topology setting, it is changed by an
// operator, never by a worker.
//
// UpdateStream is not compare-and-swap: two workers adding different
// values at once both succeed, and the later update stays. So the stream
// is read back after the update; a worker that finds the other's value
// refuses like any other mismatch. Only a worker whose read-back comes
// before the other's update misses it.
func ensureQueueTimeout(ctx context.Context, js jetstream.JetStream, s jetstream.Stream, want time.Duration) (jetstream.Stream, error) {
	cfg := s.CachedInfo().Config
	stored, ok := cfg.Metadata[MetadataQueueTimeout]
	if !ok {
		cfg.Metadata = maps.Clone(cfg.Metadata)
		if cfg.Metadata == nil {
			cfg.Metadata = map[string]string{}
		}
		cfg.Metadata[MetadataQueueTimeout] = formatQueueTimeout(want)
		var err error
		if s, err = js.UpdateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("topology: add the queue timeout to stream %s: %w", cfg.Name, err)
		}
		info, err := s.Info(ctx) // what the stream holds now, not what this update wrote
		if err != nil {
			return nil, fmt.Errorf("topology: stream %s: %w", cfg.Name, err)
		}
		stored = info.Config.Metadata[MetadataQueueTimeout]
	}
	have, err := parseQueueTimeout(stored)
	if err != nil || have != max(want, 0) {
		return nil, &MismatchError{Kind: "stream", Name: cfg.Name,
			Diffs:  []string{fmt.Sprintf("queue timeout (metadata %s) is %q, want %q", MetadataQueueTimeout, stored, formatQueueTimeout(want))},
			Fields: []FieldDiff{{Field: "metadata." + MetadataQueueTimeout, Have: stored, Want: formatQueueTimeout(want)}}}
	}
	return s, nil
}
