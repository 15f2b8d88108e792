package config

import (
	"log/slog"
	"time"

	"github.com/chatfleet/chatfleet/gateway"
	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/manager"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/subjects"
	"github.com/chatfleet/chatfleet/topology"
	"github.com/chatfleet/chatfleet/worker"
)

// The library configs the variables make.

// LLM returns the upstream config.
func (e Env) LLM() llm.Config {
	return llm.Config{BaseURL: e.LLMBaseURL, APIKey: e.LLMAPIKey, IdleTimeout: e.LLMIdle, MaxRetries: off(e.LLMRetries),
		BreakerFailures: e.LLMBreaker, BreakerCooldown: e.LLMCool, NoStreamOptions: !e.LLMStreamOptions}
}

// Topology returns the JetStream sizing.
func (e Env) Topology() topology.Config {
	return topology.Config{
		Replicas: e.Replicas, QueueLimit: e.QueueLimit, MaxQueuedPerTenant: e.QueuePerTenant,
		// The stream's limit is a backstop above the workers' own, so an
		// oversized job reaches a worker and gets an answer.
		MaxJobBytes:     max(minStreamJobBytes, 2*e.MaxJobBytes),
		DuplicateWindow: e.DuplicateWindow, ReplyMaxAge: e.ReplyMaxAge, ReplyMaxBytes: e.ReplyMaxBytes,
		AckWait: e.AckWait, MaxDeliver: e.MaxDeliver, MaxAckPending: e.MaxAckPending, QueueTimeout: off(e.QueueTimeout),
		LeaseTTL: e.LeaseTTL, CacheTTL: e.CacheTTL, CacheMaxValueBytes: e.CacheMaxBytes, CancelTTL: e.CancelTTL,
		DeadLetterMaxAge: e.DLQMaxAge,
	}
}

// Worker returns a worker config; llmCfg is the upstream to use. Telemetry
// is set by the caller.
func (e Env) Worker(llmCfg llm.Config, logger *slog.Logger) worker.Config {
	return worker.Config{
		ID:       e.WorkerID,
		Prefix:   e.Prefix,
		Topology: e.Topology(),
		Manager: manager.Config{
			DefaultModel:            e.Model,
			Limits:                  protocol.Limits{MaxJobBytes: int(e.MaxJobBytes), MaxMessages: e.MaxMessages, AllowedModels: e.Models},
			MaxConcurrentRequests:   e.MaxConcurrentRequests,
			MaxConcurrentLLMStreams: e.MaxConcurrentLLMStreams,
			MaxConcurrentFollowers:  e.MaxConcurrentFollowers,
			MaxParkedJobs:           off(e.MaxParkedJobs),
			FleetLimits:             e.FleetLimits(),
			MaxWaitingLeaders:       offOrDefault(e.MaxWaitingLeaders),
			DisableDedupe:           !e.Dedupe,
			DisableCache:            !e.Cache,
			ChunkWindow:             off(e.ChunkWindow),
			StoreBatchDelay:         off(e.StoreBatchDelay),
			MaxAnswerBytes:          e.MaxAnswerBytes,
			ProgressInterval:        e.ProgressInterval,
			ProcessingTimeout:       e.ProcessingTimeout,
			MidStreamRetries:        off(e.MidStreamRetries),
			JanitorInterval:         e.JanitorInterval,
			ToolTimeout:             e.ToolTimeout,
			MaxToolRounds:           e.ToolMaxRounds,
			MaxToolOutputBytes:      e.ToolMaxOutputBytes,
			Prepare:                 manager.PrepareMode(e.Prepare),
			PrepareTimeout:          e.PrepareTimeout,
			LogPrompts:              e.LogPrompts,
		},
		LLM:      llmCfg,
		HTTPAddr: e.HTTPAddr,
		Logger:   logger,
	}
}

// FleetLimits returns the default upstream's fleet-wide limits, for while
// the upstreams bucket holds none.
func (e Env) FleetLimits() protocol.UpstreamLimits {
	return protocol.UpstreamLimits{MaxStreams: e.FleetMaxLLMStreams, RequestsPerMinute: e.FleetRequestsPerMinute,
		TokensPerMinute: e.FleetTokensPerMinute}
}

// off maps a variable's 0, which switches a feature off (or means "none"),
// to the libraries' -1: they read 0 as "the default".
func off[T int | time.Duration](v T) T {
	if v == 0 {
		return -1
	}
	return v
}

// offOrDefault maps an unset variable to the library's default (0) and a
// set 0 to its "off" (-1).
func offOrDefault(v *int) int {
	if v == nil {
		return 0
	}
	return off(*v)
}

// Publisher returns the options of a publisher configured as e: the
// prefix, and the JetStream API prefix when one is set.
func (e Env) Publisher() []publisher.Option {
	opts := []publisher.Option{publisher.WithPrefix(e.Prefix)}
	if e.NATSAPI != "" {
		opts = append(opts, publisher.WithAPIPrefix(e.NATSAPI))
	}
	return opts
}

// GatewayKeysBucket, as CHATFLEET_GATEWAY_KEYS, reads the keys from the
// fleet's API keys bucket (a key file named so is ./kv).
const GatewayKeysBucket = "kv"

// Gateway returns the gateway's config: keys loaded from their file, or
// read from the bucket once it starts. Telemetry is set by the caller.
func (e Env) Gateway(logger *slog.Logger) (gateway.Config, error) {
	names, err := subjects.New(e.Prefix)
	if err != nil {
		return gateway.Config{}, err
	}
	c := gateway.Config{Addr: e.GatewayAddr, Names: names, Tenant: e.GatewayTenant, MaxBodyBytes: int64(e.MaxJobBytes),
		CORSOrigins: e.GatewayCORSOrigins, ResumeSecret: []byte(e.GatewayResumeSecret), Logger: logger}
	switch e.GatewayKeys {
	case "":
	case GatewayKeysBucket:
		c.KeysFromBucket = true
	default:
		if c.Keys, err = gateway.LoadKeys(e.GatewayKeys); err != nil {
			return c, err
		}
	}
	return c, nil
}
