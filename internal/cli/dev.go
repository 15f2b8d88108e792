package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/nats-io/nats.go"

	"github.com/chatfleet/chatfleet/internal/config"
	"github.com/chatfleet/chatfleet/internal/natsserver"
	"github.com/chatfleet/chatfleet/internal/telemetry"
	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/subjects"
	"github.com/chatfleet/chatfleet/topology"
	"github.com/chatfleet/chatfleet/worker"
)

// runDev runs everything on one machine with no set-up: an embedded NATS
// server with JetStream that other processes can join, the topology, the
// in-process workers, the example fleet tools, and a simulated model
// (which calls the tools a job offers) when no upstream is configured.
func runDev(ctx context.Context, args []string, io IO) int {
	env, logger, code := loadServerEnv(io, "dev", args)
	if code != ExitOK {
		return code
	}
	names, err := subjects.New(env.Prefix)
	if err != nil {
		fmt.Fprintln(io.Err, "chatfleet dev:", err)
		return ExitUsage
	}
	if err := env.CheckModel(); err != nil {
		logger.Error("dev not started", "err", err)
		return ExitUsage
	}
	ns, err := natsserver.Start(natsserver.Config{
		Listen:   env.DevListen,
		StoreDir: filepath.Join(env.DevDataDir, "nats"),
		Name:     "chatfleet-dev",
	})
	if err != nil {
		logger.Error("cannot start the embedded NATS server", "listen", env.DevListen, "err", err, inUse(err, "CHATFLEET_DEV_LISTEN"))
		return ExitFailed
	}
	defer ns.Shutdown()

	// The topology comes first, whatever the number of workers: producers
	// can submit as soon as dev is up.
	if !createDevTopology(ctx, env, names, ns.ClientURL(), logger) {
		return ExitFailed
	}
	// The example tools stop after the workers (deferred before them),
	// which may be waiting for a call.
	toolServer := startDevTools(ns.ClientURL(), names.Prefix(), logger)
	if toolServer == nil {
		return ExitFailed
	}
	defer toolServer.stop(env.ShutdownGrace)
	llmCfg, sim, code := devUpstream(env, logger)
	if code != ExitOK {
		return code
	}
	simulated := sim != nil
	if simulated {
		defer sim.Close()
	}

	// Workers stop before their connections close, and both before the
	// NATS server shuts down (deferred above).
	ws := &devWorkers{env: env, logger: logger}
	defer ws.close()
	for i := range env.DevWorkers {
		if code := ws.start(ctx, ns.ClientURL(), llmCfg, i); code != ExitOK {
			return code
		}
	}
	gatewayURL := ""
	if env.GatewayAddr != "" {
		gw, stop, code := startDevGateway(ctx, env, logger, ns.ClientURL())
		if code != ExitOK {
			return code
		}
		defer stop() // before the workers stop: open streams finish first
		gatewayURL = "http://" + gw.Addr().String() + "/v1"
	}
	logger.Info("chatfleet dev is up", "nats", ns.ClientURL(), "workers", len(ws.workers), "data", env.DevDataDir, "gateway", gatewayURL,
		"tools", strings.Join(toolServer.names, ","))
	fmt.Fprint(io.Err, devBanner(env, ns.ClientURL(), llmCfg.BaseURL, gatewayURL, simulated, toolServer.names))
	<-ctx.Done()
	return ws.stop()
}

// createDevTopology creates the topology on the embedded NATS server at
// url. It logs a failure and reports it with false.
func createDevTopology(ctx context.Context, env config.Env, names subjects.Names, url string, logger *slog.Logger) bool {
	admin, err := nats.Connect(url, nats.Name("chatfleet dev"))
	if err != nil {
		logger.Error("cannot connect to the embedded NATS server", "err", err)
		return false
	}
	_, err = ensureTopology(ctx, env, names, admin)
	admin.Close()
	if errors.Is(err, topology.ErrMismatch) {
		// Most likely an earlier dev run's settings, kept in its data.
		err = fmt.Errorf("%w; or remove %s (CHATFLEET_DEV_DATA_DIR) to start afresh", err, env.DevDataDir)
	}
	if err != nil {
		logger.Error("cannot create the topology", "err", err)
		return false
	}
	return true
}

// devUpstream returns the upstream dev's workers call: the configured
// one, or when none is configured the simulated model, which it starts
// (sim, for the caller to close). code is ExitFailed after a failure it
// logged.
func devUpstream(env config.Env, logger *slog.Logger) (cfg llm.Config, sim *llmtest.Server, code int) {
	if env.UpstreamConfigured() {
		return env.LLM(), nil, ExitOK
	}
	sim, ok := listenSimulated(env, logger)
	if !ok {
		return llm.Config{}, nil, ExitFailed
	}
	logger.Warn("SIMULATED MODEL: no upstream is configured (set CHATFLEET_LLM_BASE_URL or OPENAI_API_KEY); " +
		"answers come from chatfleet's built-in simulated model, not an LLM")
	return llm.Config{BaseURL: sim.URL()}, sim, ExitOK
}

// devWorkers are dev's in-process workers, each on a NATS connection of
// its own, and their telemetry.
type devWorkers struct {
	env     config.Env
	logger  *slog.Logger
	workers []*worker.Worker // started and not stopped yet
	conns   []*nats.Conn
	tels    []*telemetry.Telemetry
}

// start connects worker i (of env.DevWorkers) to the NATS server at url
// and starts it on llmCfg. The code is not ExitOK after a failure it
// logged; close releases whatever was started.
func (d *devWorkers) start(ctx context.Context, url string, llmCfg llm.Config, i int) int {
	nc, err := nats.Connect(url, nats.Name(fmt.Sprintf("chatfleet dev worker %d", i+1)), nats.MaxReconnects(-1))
	if err != nil {
		d.logger.Error("cannot connect a worker", "err", err)
		return ExitFailed
	}
	d.conns = append(d.conns, nc)
	cfg := d.env.Worker(llmCfg, d.logger)
	if cfg.Upstreams, err = d.env.Upstreams(); err != nil {
		d.logger.Error("worker not started", "err", err)
		return ExitUsage
	}
	if cfg.ID == "" || d.env.DevWorkers > 1 {
		cfg.ID = fmt.Sprintf("dev-%d", i+1)
	}
	if i > 0 {
		cfg.HTTPAddr = "" // one health endpoint is enough in dev mode
	}
	w, tel, code := startWorker(ctx, d.env, d.logger, cfg, nc)
	if code != ExitOK {
		return code
	}
	d.tels = append(d.tels, tel)
	d.workers = append(d.workers, w)
	return ExitOK
}

// stop stops the workers gracefully, all at once, and returns the exit
// code.
func (d *devWorkers) stop() int {
	code := stopWorkers(d.logger, d.env.ShutdownGrace, d.workers...)
	d.workers = nil // stopped: close has nothing left to stop
	return code
}

// close shuts the workers' telemetry down, the last started first, stops
// the workers still running (after a failed start) and closes the
// connections.
func (d *devWorkers) close() {
	for i := len(d.tels) - 1; i >= 0; i-- {
		shutdownTelemetry(d.tels[i])
	}
	if len(d.workers) > 0 {
		stopWorkers(d.logger, d.env.ShutdownGrace, d.workers...)
	}
	for _, nc := range d.conns {
		nc.Close()
	}
}

// inUse returns a log attribute naming the variable to change when err is
// "address already in use", and an empty one (which logs nothing)
// otherwise.
func inUse(err error, variable string) slog.Attr {
	if errors.Is(err, syscall.EADDRINUSE) {
		return slog.String("fix", "the address is taken: set "+variable+" to a free host:port")
	}
	return slog.Attr{}
}
