package cli

import (
	"context"
	"time"

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
	cfg := env.Worker(env.LLM(), logger)
	tel, err := setupTelemetry(ctx, "chatfleet-worker", &cfg)
	if err != nil {
		logger.Error("telemetry", "err", err)
		return ExitFailed
	}
	defer shutdownTelemetry(tel)
	w, err := worker.New(cfg, nc)
	if err != nil {
		logger.Error("invalid configuration", "err", err)
		return ExitUsage
	}
	if err := w.Start(ctx); err != nil {
		logger.Error("worker did not start", "err", err)
		return ExitFailed
	}
	<-ctx.Done()
	return stopWorkers(logger, env.ShutdownGrace, w)
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
