package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"syscall"

	"github.com/nats-io/nats.go"

	"github.com/chatfleet/chatfleet/internal/natsserver"
	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/subjects"
	"github.com/chatfleet/chatfleet/topology"
	"github.com/chatfleet/chatfleet/worker"
)

// runDev runs everything on one machine with no set-up: an embedded NATS
// server with JetStream that other processes can join, the topology, the
// in-process workers, and a simulated model when no upstream is
// configured.
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
	admin, err := nats.Connect(ns.ClientURL(), nats.Name("chatfleet dev"))
	if err != nil {
		logger.Error("cannot connect to the embedded NATS server", "err", err)
		return ExitFailed
	}
	_, err = ensureTopology(ctx, env, names, admin)
	admin.Close()
	if errors.Is(err, topology.ErrMismatch) {
		// Most likely an earlier dev run's settings, kept in its data.
		err = fmt.Errorf("%w; or remove %s (CHATFLEET_DEV_DATA_DIR) to start afresh", err, env.DevDataDir)
	}
	if err != nil {
		logger.Error("cannot create the topology", "err", err)
		return ExitFailed
	}

	llmCfg := env.LLM()
	simulated := !env.UpstreamConfigured()
	if simulated {
		sim, err := llmtest.Listen(env.DevModelListen, llmtest.WithTokens(env.DevTokens),
			llmtest.WithDelay(env.DevTokenDelay, env.DevTokenDelay))
		if err != nil {
			logger.Error("cannot start the simulated model", "listen", env.DevModelListen, "err", err, inUse(err, "CHATFLEET_DEV_MODEL_LISTEN"))
			return ExitFailed
		}
		defer sim.Close()
		llmCfg = llm.Config{BaseURL: sim.URL()}
		logger.Warn("SIMULATED MODEL: no upstream is configured (set CHATFLEET_LLM_BASE_URL or OPENAI_API_KEY); " +
			"answers come from chatfleet's built-in simulated model, not an LLM")
	}

	// Workers stop before their connections close, and both before the
	// NATS server shuts down (deferred above).
	var (
		workers []*worker.Worker
		conns   []*nats.Conn
	)
	defer func() {
		if len(workers) > 0 {
			stopWorkers(logger, env.ShutdownGrace, workers...)
		}
		for _, nc := range conns {
			nc.Close()
		}
	}()
	for i := range env.DevWorkers {
		nc, err := nats.Connect(ns.ClientURL(), nats.Name(fmt.Sprintf("chatfleet dev worker %d", i+1)), nats.MaxReconnects(-1))
		if err != nil {
			logger.Error("cannot connect a worker", "err", err)
			return ExitFailed
		}
		conns = append(conns, nc)
		cfg := env.Worker(llmCfg, logger)
		if cfg.ID == "" || env.DevWorkers > 1 {
			cfg.ID = fmt.Sprintf("dev-%d", i+1)
		}
		if i > 0 {
			cfg.HTTPAddr = "" // one health endpoint is enough in dev mode
		}
		w, tel, code := startWorker(ctx, env, logger, cfg, nc)
		if code != ExitOK {
			return code
		}
		defer shutdownTelemetry(tel)
		workers = append(workers, w)
	}
	logger.Info("chatfleet dev is up", "nats", ns.ClientURL(), "workers", len(workers), "data", env.DevDataDir)
	fmt.Fprint(io.Err, devBanner(env, ns.ClientURL(), llmCfg.BaseURL, simulated))
	<-ctx.Done()
	code = stopWorkers(logger, env.ShutdownGrace, workers...)
	workers = nil // stopped: the deferred stop has nothing left to do
	return code
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
