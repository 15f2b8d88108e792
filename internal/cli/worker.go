package cli

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/chatfleet/chatfleet/internal/config"
	"github.com/chatfleet/chatfleet/internal/telemetry"
	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/worker"
)

// unreachableEvery is how often a worker waiting for NATS says so again.
const unreachableEvery = 30 * time.Second

func runWorker(ctx context.Context, args []string, io IO) int {
	env, logger, code := loadServerEnv(io, "worker", args)
	if code != ExitOK {
		return code
	}
	if err := env.CheckUpstream(); err != nil {
		logger.Error("worker not started", "err", err)
		return ExitUsage
	}
	var (
		connectedOnce sync.Once
		connected     = make(chan struct{})
		lastErr       atomic.Pointer[error]
	)
	nc, err := env.Connect("chatfleet worker", true,
		nats.ConnectHandler(func(*nats.Conn) { connectedOnce.Do(func() { close(connected) }) }),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) { lastErr.Store(&err) }))
	if err != nil {
		logger.Error("cannot connect to NATS", "err", err)
		return ExitFailed
	}
	defer nc.Close()
	if !waitForNATS(ctx, logger, env, nc, connected, &lastErr) {
		return ExitOK // stopped before NATS was reached: nothing ran
	}
	w, tel, code := startWorker(ctx, env, logger, env.Worker(env.LLM(), logger), nc)
	if code != ExitOK {
		return code
	}
	defer shutdownTelemetry(tel)
	<-ctx.Done()
	return stopWorkers(logger, env.ShutdownGrace, w)
}

// waitForNATS waits until nc has connected (connected is closed) or ctx
// ends, which it reports with false. While it waits it says, now and
// every unreachableEvery, which URL it cannot reach and why.
func waitForNATS(ctx context.Context, logger *slog.Logger, env config.Env, nc *nats.Conn, connected <-chan struct{}, lastErr *atomic.Pointer[error]) bool {
	if nc.IsConnected() {
		return true
	}
	url := config.RedactURL(env.NATSURL)
	warn := func() {
		attrs := []any{"url", url}
		if err := lastErr.Load(); err != nil {
			attrs = append(attrs, "err", env.Redact(*err))
		}
		logger.Warn("cannot reach NATS; retrying until it is up (CHATFLEET_NATS_URL)", attrs...)
	}
	warn()
	tick := time.NewTicker(unreachableEvery)
	defer tick.Stop()
	for {
		select {
		case <-connected:
			logger.Info("connected to NATS", "url", nc.ConnectedUrlRedacted())
			return true
		case <-tick.C:
			warn()
		case <-ctx.Done():
			logger.Info("stopped before NATS was reached", "url", url)
			return false
		}
	}
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
		logger.Error("worker did not start", "err", env.Redact(env.ExplainTopology(err)), inUse(err, "CHATFLEET_HTTP_ADDR"))
		return nil, nil, ExitFailed
	}
	logUpstream(logger, cfg)
	return w, tel, ExitOK
}

// logUpstream says where a worker's jobs go: the base URL (credentials
// redacted), the default model and whether an API key is set.
func logUpstream(logger *slog.Logger, cfg worker.Config) {
	base := cfg.LLM.BaseURL
	if base == "" {
		base = llm.DefaultBaseURL
	}
	key := "none"
	if cfg.LLM.APIKey != "" {
		key = "set"
	}
	logger.Info("upstream", "worker", cfg.ID, "base_url", config.RedactURL(base), "model", cfg.Manager.DefaultModel, "api_key", key)
}

// stopWorkers stops workers gracefully within grace, all at once.
func stopWorkers(logger interface{ Info(string, ...any) }, grace time.Duration, ws ...*worker.Worker) int {
	logger.Info("shutting down", "grace", grace)
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	errs := make(chan error, len(ws))
	for _, w := range ws {
		go func() { errs <- w.Stop(ctx) }() // owned by this call: it receives every result below
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
