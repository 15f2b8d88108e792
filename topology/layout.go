package topology

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
)

// MetadataLayout is the jobs stream's metadata key naming the fleet's
// queue layout. A stream without it has the layout before priorities: one
// consumer (<prefix>_workers) that every worker shares, pulling all jobs
// in arrival order.
const MetadataLayout = "chatfleet.layout"

// LayoutQueues is the layout with a queue per tenant and priority: the
// stream also stores PriorityJobs, announces every job it stores on
// QueuedJobs (headers only), and workers pull from one consumer per
// tenant and priority (QueueConsumer), which they create as jobs arrive.
const LayoutQueues = "queues-v2"

// ErrOldLayout is matched (errors.Is) by the error of a process that finds
// the jobs stream in another layout than its own. It also matches
// ErrMismatch.
var ErrOldLayout = errors.New("topology: the jobs stream has an older layout")

// LayoutError says the jobs stream has another layout than this process
// uses, and how to migrate it.
type LayoutError struct {
	Stream string
	Have   string // "" for the layout before priorities
	Want   string
}

func (e *LayoutError) Error() string {
	have := e.Have
	if have == "" {
		have = "one shared consumer (before priorities)"
	}
	return fmt.Sprintf("topology: stream %s has the queue layout %s, this version uses %s; chatfleet does not change it "+
		"by itself: run `chatfleet init --migrate` once (it shows what it changes; queued jobs stay), after the workers "+
		"of the older version have stopped taking jobs (see the README's Upgrades)", e.Stream, have, e.Want)
}

// Is reports whether target is ErrOldLayout or ErrMismatch.
func (e *LayoutError) Is(target error) bool { return target == ErrOldLayout || target == ErrMismatch }

// checkLayout refuses a jobs stream of another layout.
func checkLayout(cfg jetstream.StreamConfig) error {
	if have := cfg.Metadata[MetadataLayout]; have != LayoutQueues {
		return &LayoutError{Stream: cfg.Name, Have: have, Want: LayoutQueues}
	}
	return nil
}

// Migration is what `chatfleet init --migrate` changes to bring a fleet to
// this version's layout, in order. Steps is empty when there is nothing to
// do.
type Migration struct {
	Steps []string
	js    jetstream.JetStream
	cfg   Config
	apply []func(ctx context.Context) error
}

// PlanMigration reads the jobs stream and says what Apply would change.
// A fleet without a jobs stream needs no migration (Ensure creates it in
// the current layout).
func PlanMigration(ctx context.Context, js jetstream.JetStream, cfg Config) (*Migration, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Migration{js: js, cfg: cfg}
	s, err := js.Stream(ctx, cfg.Names.JobsStream())
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("topology: stream %s: %w", cfg.Names.JobsStream(), err)
	}
	have := s.CachedInfo().Config
	if have.Metadata[MetadataLayout] == LayoutQueues {
		return m, nil
	}
	// The shared consumer goes first: while it exists it would take the
	// new subjects' jobs to workers that do not know them, and the server
	// refuses the per-tenant consumers beside it (a work-queue stream's
	// consumers must not overlap). Jobs wait in the stream meanwhile.
	old := cfg.Names.WorkersConsumer()
	if _, err := s.Consumer(ctx, old); err == nil {
		m.Steps = append(m.Steps, fmt.Sprintf("delete consumer %s (workers of the older version stop taking jobs; "+
			"jobs they hold unacked are delivered again to the new workers)", old))
		m.apply = append(m.apply, func(ctx context.Context) error {
			if err := s.DeleteConsumer(ctx, old); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				return fmt.Errorf("topology: delete consumer %s: %w", old, err)
			}
			return nil
		})
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("topology: consumer %s: %w", old, err)
	}
	want := migratedJobsStream(have, cfg)
	m.Steps = append(m.Steps, fmt.Sprintf("update stream %s: subjects %v → %v; announce stored jobs on %s (headers only); "+
		"metadata %s=%s (its jobs stay)", have.Name, have.Subjects, want.Subjects, cfg.Names.QueuedJobs(), MetadataLayout, LayoutQueues))
	m.apply = append(m.apply, func(ctx context.Context) error {
		if _, err := js.UpdateStream(ctx, want); err != nil {
			return fmt.Errorf("topology: update stream %s: %w", want.Name, err)
		}
		return nil
	})
	return m, nil
}

// migratedJobsStream is the existing jobs stream have with only what the
// layout adds: every other setting (limits, metadata) stays as it is.
func migratedJobsStream(have jetstream.StreamConfig, cfg Config) jetstream.StreamConfig {
	want := jobsStream(cfg)
	have.Subjects = slices.Clone(want.Subjects)
	have.RePublish = want.RePublish
	have.Metadata = maps.Clone(have.Metadata)
	if have.Metadata == nil {
		have.Metadata = map[string]string{}
	}
	have.Metadata[MetadataLayout] = LayoutQueues
	return have
}

// Apply makes the changes Steps lists, in order, and stops at the first
// that fails (running it again continues from there).
func (m *Migration) Apply(ctx context.Context) error {
	for _, step := range m.apply {
		if err := step(ctx); err != nil {
			return err
		}
	}
	return nil
}

// LegacyJobsStream is the jobs stream as versions before priorities
// created it, and LegacyWorkersConsumer their shared consumer: for tests
// of an upgrade.
func LegacyJobsStream(c Config) jetstream.StreamConfig {
	c = c.WithDefaults()
	s := jobsStream(c)
	s.Description = "chatfleet jobs, one per request; workers share one consumer"
	s.Subjects = []string{c.Names.AllJobs()}
	s.RePublish = nil
	s.Metadata = maps.Clone(s.Metadata)
	delete(s.Metadata, MetadataLayout)
	return s
}

// LegacyWorkersConsumer is the consumer every worker shared before
// priorities; see LegacyJobsStream.
func LegacyWorkersConsumer(c Config) jetstream.ConsumerConfig {
	c = c.WithDefaults()
	q := queueConsumer(c, "x", "normal")
	q.Durable, q.Description, q.FilterSubject, q.InactiveThreshold = c.Names.WorkersConsumer(), "chatfleet workers", c.Names.AllJobs(), 0
	return q
}
