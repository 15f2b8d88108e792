package cli

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/chatfleet/chatfleet/internal/config"
	"github.com/chatfleet/chatfleet/internal/telemetry"
	"github.com/chatfleet/chatfleet/worker"
)

func runWorker(ctx context.Context, args []string, io IO) int {
	env, logger, code := loadServerEnv(io, "worker", args)
	if code != ExitOK {
		return code
	}
	nc, err := env.Connect("chatfleet worker", true)
	if err != nil {
		logger.Error("cannot connect to NATS", "err", err)
		return ExitFailed
	}
	defer nc.Close()
	w, tel, code := startWorker(ctx, env, logger, env.Worker(env.LLM(), logger), nc)
	if code != ExitOK {
		return code
	}
	defer shutdownTelemetry(tel)
	<-ctx.Done()
	return stopWorkers(logger, env.ShutdownGrace, w)
}

// startWorker gives cfg telemetry and starts a worker with it on nc. code
// is non-zero after a failure it reported; otherwise the caller stops w,
// then shuts tel down.
func startWorker(ctx context.Context, env config.Env, logger *slog.Logger, cfg worker.Config, nc *nats.Conn) (w *worker.Worker, tel *telemetry.Telemetry, code int) {
	tel, err := setupTelemetry(ctx, "chatfleet-worker", &cfg)
	if err != nil {
		logger.Error("telemetry", "err", err)
		return nil, nil, ExitFailed
	}
	if w, err = worker.New(cfg, nc); err != nil {
		shutdownTelemetry(tel)
		logger.Error("invalid configuration", "err", env.Redact(err))
		return nil, nil, ExitUsage
	}
	if err := w.Start(ctx); err != nil {
		shutdownTelemetry(tel)
		logger.Error("worker did not start", "err", env.Redact(env.ExplainTopology(err)))
		return nil, nil, ExitFailed
	}
	return w, tel, ExitOK
}

// stopWorkers stops workers gracefully within grace, all at once.
func stopWorkers(logger interface{ Info(string, ...any) }, grace time.Duration, ws ...*worker.Worker) int {
	logger.Info("shutting down", "grace", grace)
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	errs := make(chan error, len(ws))
	for _, w := range ws {
		go func() { errs <- w.Stop(ctx) }()
	}
	code := ExitOK
	for range ws {
		if err := <-errs; err != nil {
			code = ExitFailed
		}
	}
	return code
}

// setupTelemetry gives cfg (and its manager) tracer and meter providers and
// a /metrics handler. The worker ID names the service instance.
func setupTelemetry(ctx context.Context, service string, cfg *worker.Config) (*telemetry.Telemetry, error) {
	defaulted, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	tel, err := telemetry.Setup(ctx, service, defaulted.ID)
	if err != nil {
		return nil, err
	}
	cfg.ID = defaulted.ID
	cfg.Metrics = tel.Metrics
	cfg.Manager.TracerProvider, cfg.Manager.MeterProvider = tel.Tracer, tel.Meter
	return tel, nil
}

// shutdownTelemetry flushes spans still buffered.
func shutdownTelemetry(tel *telemetry.Telemetry) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = tel.Shutdown(ctx)
}
