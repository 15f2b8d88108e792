package manager

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/chatfleet/chatfleet/internal/defaults"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/subjects"
)

// Config configures a Manager. Each field's comment ends with its default.
type Config struct {
	// WorkerID names this worker in meta events, leases and control
	// subjects; a valid subjects name. Required.
	WorkerID string
	// Names derives subjects and buckets. Defaults to subjects.Default().
	Names subjects.Names
	// DefaultModel is used for jobs that name no model. Defaults to "".
	DefaultModel string
	// Limits bound accepted jobs. Defaults to protocol's defaults.
	Limits protocol.Limits
	// MaxConcurrentRequests caps requests this worker leads or is routing.
	// Defaults to 64.
	MaxConcurrentRequests int
	// MaxWaitingLeaders is how many leaders may wait for an upstream slot
	// without holding a request slot, so the worker goes on pulling jobs
	// (cache hits and followers are served at once) while its upstream is
	// the bottleneck. Negative disables: waiting leaders keep their request
	// slots. Defaults to MaxConcurrentLLMStreams: each waits for about one
	// generation on this worker.
	MaxWaitingLeaders int
	// MaxParkedJobs is how many jobs may wait for their tenant (paused, or
	// at its in-flight or token limit) without holding a request slot, so
	// the worker goes on pulling other tenants' jobs. Beyond it a waiting
	// job keeps its slot. Negative disables. Defaults to 1024.
	MaxParkedJobs int
	// MaxConcurrentLLMStreams caps concurrent upstream streams. Defaults to 16.
	MaxConcurrentLLMStreams int
	// Upstreams are more upstreams, by model, besides the default one New
	// takes: a job for a model they list goes to the least loaded of them
	// that is healthy. Defaults to none.
	Upstreams []Upstream
	// FleetLimits are the default upstream's fleet-wide limits (streams at
	// once, requests and tokens per minute) while the upstreams bucket
	// holds none for it; the bucket's entry, once set, wins on every
	// worker. Defaults to none.
	FleetLimits protocol.UpstreamLimits
	// MaxConcurrentFollowers caps requests that follow a generation or are
	// served from the cache. Defaults to 1024.
	MaxConcurrentFollowers int
	// DisableDedupe makes jobs that do not say otherwise skip dedupe.
	// Defaults to false (dedupe on).
	DisableDedupe bool
	// DisableCache makes jobs that do not say otherwise skip the answer
	// cache. Defaults to false (cache on).
	DisableCache bool
	// ChunkWindow merges upstream deltas arriving within this window into
	// one chunk event; the first delta after a quiet spell goes out at
	// once. Negative disables merging. Defaults to 5ms.
	ChunkWindow time.Duration
	// StoreBatchDelay is how long a live reply's events (see live.go) may
	// wait to be stored after they went out live: the events shown
	// meanwhile are stored together, in one message. It bounds how far a
	// reader recovering from the stream trails the live reply. Negative
	// stores each as soon as the batch before it is. Defaults to 50ms.
	StoreBatchDelay time.Duration
	// MaxAnswerBytes bounds one answer's output (text, tool-call arguments,
	// refusal and reasoning together): a longer one ends with
	// answer_too_large and its upstream request is cancelled. It bounds
	// what a generation holds in memory for late joiners. Defaults to
	// 8 MiB: 16 times the longest answer today's models give (about 128k
	// output tokens, some 512 KB of text), so only a runaway stream hits it.
	MaxAnswerBytes int
	// ProgressInterval is how long a request waiting for its first output
	// stays silent before it repeats its stage in a progress event (a
	// heartbeat). Defaults to 5s.
	ProgressInterval time.Duration
	// ProcessingTimeout bounds a request's run and a generation's upstream
	// call; a job's timeout_ms may shorten it. Defaults to 10m.
	ProcessingTimeout time.Duration
	// MidStreamRetries is how often a generation whose upstream stream
	// breaks after partial output is started again, behind a reset event;
	// after that the requests end with the upstream's error. Negative
	// disables retrying. Defaults to 1.
	MidStreamRetries int
	// ToolTimeout bounds one fleet tool call; past it the model reads that
	// the tool timed out. Defaults to 30s.
	ToolTimeout time.Duration
	// MaxToolRounds bounds the model's turns that call fleet tools in one
	// generation; past it the generation ends with tool_rounds_exceeded.
	// Defaults to 8.
	MaxToolRounds int
	// MaxToolOutputBytes bounds one tool call's output: what the model
	// reads and what listeners see; more is cut. It is also held under the
	// chunk cap, so a call's whole output fits one event. Defaults to 32 KiB.
	MaxToolOutputBytes int
	// Prepare says whether a leader calls the tenant's preparation
	// service before generating, and what a failure does: PrepareOff,
	// PrepareRequired (the job fails with prepare_failed) or
	// PrepareOptional (the job goes on unprepared). Defaults to PrepareOff.
	Prepare PrepareMode
	// PrepareTimeout bounds the preparation call. Defaults to 10s.
	PrepareTimeout time.Duration
	// JanitorInterval is how often the janitor sweeps for requests past
	// their deadline and stale entries. Defaults to 1s.
	JanitorInterval time.Duration
	// MaintenanceInterval is how often the fleet's maintainer (one worker
	// at a time, elected) looks for jobs queued past their queue timeout
	// (the topology's QueueTimeout) and jobs the consumer gave up on.
	// Defaults to 1s.
	MaintenanceInterval time.Duration
	// JoinTimeout bounds a follower's request to join a remote leader.
	// Defaults to 2s.
	JoinTimeout time.Duration
	// Logger receives the manager's logs. Prompts and answers are never
	// logged, unless LogPrompts. Defaults to slog.Default().
	Logger *slog.Logger
	// LogPrompts logs each job's last message (truncated) when it arrives:
	// a debugging switch that puts user data in the logs. Defaults to false.
	LogPrompts bool
	// TracerProvider creates the spans of each job, its routing, relay and
	// upstream stream. Defaults to a no-op provider.
	TracerProvider trace.TracerProvider
	// MeterProvider creates the chatfleet.* metrics. Defaults to a no-op
	// provider.
	MeterProvider metric.MeterProvider
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Names == (subjects.Names{}) {
		c.Names = subjects.Default()
	}
	defaults.Set(&c.MaxConcurrentRequests, 64)
	defaults.Set(&c.MaxConcurrentLLMStreams, 16)
	defaults.Set(&c.MaxWaitingLeaders, c.MaxConcurrentLLMStreams)
	defaults.Set(&c.MaxConcurrentFollowers, 1024)
	defaults.Set(&c.MaxParkedJobs, 1024)
	defaults.Set(&c.ChunkWindow, 5*time.Millisecond)
	defaults.Set(&c.StoreBatchDelay, 50*time.Millisecond)
	defaults.Set(&c.MaxAnswerBytes, 8<<20)
	defaults.Set(&c.ProgressInterval, 5*time.Second)
	defaults.Set(&c.ProcessingTimeout, 10*time.Minute)
	defaults.Set(&c.MidStreamRetries, 1)
	defaults.Set(&c.ToolTimeout, 30*time.Second)
	defaults.Set(&c.MaxToolRounds, 8)
	defaults.Set(&c.MaxToolOutputBytes, 32<<10)
	defaults.Set(&c.Prepare, PrepareOff)
	defaults.Set(&c.PrepareTimeout, 10*time.Second)
	defaults.Set(&c.JanitorInterval, time.Second)
	defaults.Set(&c.MaintenanceInterval, time.Second)
	defaults.Set(&c.JoinTimeout, 2*time.Second)
	defaults.Observers(&c.Logger, &c.TracerProvider, &c.MeterProvider)
	return c
}

// ErrInvalidConfig is wrapped by every configuration error.
var ErrInvalidConfig = errors.New("manager: invalid config")

func (c Config) validate() error {
	if err := subjects.ValidName("worker", c.WorkerID); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	switch c.Prepare {
	case PrepareOff, PrepareRequired, PrepareOptional:
	default:
		return fmt.Errorf("%w: Prepare must be off, required or optional, got %q", ErrInvalidConfig, c.Prepare)
	}
	for name, v := range map[string]int{
		"MaxConcurrentRequests":   c.MaxConcurrentRequests,
		"MaxConcurrentLLMStreams": c.MaxConcurrentLLMStreams,
		"MaxConcurrentFollowers":  c.MaxConcurrentFollowers,
		"MaxAnswerBytes":          c.MaxAnswerBytes,
	} {
		if v < 1 {
			return fmt.Errorf("%w: %s must be at least 1, got %d", ErrInvalidConfig, name, v)
		}
	}
	if c.ProgressInterval <= 0 {
		return fmt.Errorf("%w: ProgressInterval must be positive, got %s", ErrInvalidConfig, c.ProgressInterval)
	}
	seen := map[string]bool{protocol.DefaultUpstream: true}
	for _, u := range c.Upstreams {
		if err := subjects.ValidName("upstream", u.Name); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		if seen[u.Name] || u.Client == nil || len(u.Models) == 0 {
			return fmt.Errorf("%w: upstream %s: a name of its own (not %s), a client and models are required", ErrInvalidConfig, u.Name, protocol.DefaultUpstream)
		}
		seen[u.Name] = true
	}
	if c.MaintenanceInterval < 0 {
		return fmt.Errorf("%w: MaintenanceInterval must not be negative, got %s", ErrInvalidConfig, c.MaintenanceInterval)
	}
	return nil
}
