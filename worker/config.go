package worker

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/manager"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/subjects"
	"github.com/chatfleet/chatfleet/topology"
)

// Config configures a Worker. Each field's comment ends with its default.
type Config struct {
	// ID names the worker in meta events and leases. Defaults to
	// "<hostname>-<pid>", with characters outside [A-Za-z0-9_-] replaced.
	ID string
	// Prefix is the subject prefix. Defaults to "chat".
	Prefix string
	// Topology sizes the streams, consumer and buckets the worker creates
	// (or checks) at start. Names is set from Prefix. Defaults to
	// topology's defaults.
	Topology topology.Config
	// Manager configures request handling; WorkerID and Names are set
	// from the fields above (AckWait and LeaseTTL are the topology's). Defaults to manager's
	// defaults.
	Manager manager.Config
	// LLM configures the upstream. Defaults to llm's defaults (OpenAI).
	LLM llm.Config
	// Upstreams are more upstreams, by model (manager.Upstream; the
	// worker makes each one's client). Defaults to none.
	Upstreams []UpstreamConfig
	// HTTPAddr serves /healthz, /readyz and /metrics; empty disables it.
	// Defaults to "".
	HTTPAddr string
	// Metrics, when set, is served at /metrics (see internal/telemetry).
	// Defaults to nil: no /metrics.
	Metrics http.Handler
	// FetchWait is how long an idle worker waits for the jobs stream to
	// announce a job before it reads the stream's queues itself, and how
	// often it reads them while busy (finding jobs handed back for another
	// delivery, which are not announced). Defaults to 1s.
	FetchWait time.Duration
	// HardStopTimeout bounds Stop's hard stop: how long handing the jobs
	// still running back to the queue may take once the grace period is
	// over. Defaults to 10s.
	HardStopTimeout time.Duration
	// Logger receives the worker's logs. Defaults to slog.Default().
	Logger *slog.Logger
}

// WithDefaults returns c with every zero field set to its default and the
// shared fields copied into Topology and Manager.
func (c Config) WithDefaults() (Config, error) {
	if c.ID == "" {
		host, _ := os.Hostname()
		c.ID = subjects.SanitizeName(fmt.Sprintf("%s-%d", host, os.Getpid()))
	}
	if c.Prefix == "" {
		c.Prefix = subjects.DefaultPrefix
	}
	names, err := subjects.New(c.Prefix)
	if err != nil {
		return c, err
	}
	if c.FetchWait <= 0 {
		c.FetchWait = time.Second
	}
	if c.HardStopTimeout <= 0 {
		c.HardStopTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Topology.Names = names
	c.Topology = c.Topology.WithDefaults()
	c.Manager.WorkerID = c.ID
	c.Manager.Names = names
	if c.Manager.Logger == nil {
		c.Manager.Logger = c.Logger
	}
	c.Manager = c.Manager.WithDefaults()
	return c, nil
}

func (c Config) validate() error {
	if err := subjects.ValidName("worker ID", c.ID); err != nil {
		return err
	}
	return c.Topology.Validate()
}

// UpstreamConfig is one more upstream: manager.Upstream with the client's
// configuration in place of the client.
type UpstreamConfig struct {
	// Name is its name (not "default"). Required.
	Name string
	// Models are the models it serves. Required.
	Models []string
	// Weight is its share of its models' load. Defaults to 1.
	Weight int
	// LLM configures its client. Defaults to llm's defaults.
	LLM llm.Config
	// Limits are its fleet-wide limits while the upstreams bucket holds
	// none. Defaults to none.
	Limits protocol.UpstreamLimits
}
