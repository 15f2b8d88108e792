package cli

import (
	"context"
	"errors"
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

// reasonWait bounds how long a worker waiting for NATS holds its first
// warning back for the reason of a failed attempt (normally milliseconds).
const reasonWait = 5 * time.Second

func runWorker(ctx context.Context, args []string, io IO) int {
	env, logger, code := loadServerEnv(io, "worker", args)
	if code != ExitOK {
		return code
	}
	for _, check := range []func() error{env.CheckUpstream, env.CheckModel} {
		if err := check(); err != nil {
			logger.Error("worker not started", "err", err)
			return ExitUsage
		}
	}
	cfg := env.Worker(env.LLM(), logger)
	var err error
	if cfg.Upstreams, err = env.Upstreams(); err != nil {
		logger.Error("worker not started", "err", err)
		return ExitUsage
	}
	wait := newNATSWait()
	nc, err := env.Connect("chatfleet worker", true, wait.options()...)
	if err != nil {
		logger.Error("cannot connect to NATS", "err", err)
		return ExitFailed
	}
	defer nc.Close()
	if connected, code := waitForNATS(ctx, logger, env, nc, wait); !connected {
		return code
	}
	w, tel, code := startWorker(ctx, env, logger, cfg, nc)
	if code != ExitOK {
		return code
	}
	defer shutdownTelemetry(tel)
	<-ctx.Done()
	return stopWorkers(logger, env.ShutdownGrace, w)
}

// natsWait follows a worker's connection until it is established: why the
// last attempt failed, and whether it has connected or closed. nats.go
// reports each failed attempt, the first one included, on its own
// goroutine, after Connect has returned.
type natsWait struct {
	connected chan struct{} // closed once connected
	closed    chan struct{} // closed when the connection closes
	reason    chan struct{} // closed once a failed attempt said why
	lastErr   atomic.Pointer[error]

	connectedOnce, closedOnce, reasonOnce sync.Once
}

func newNATSWait() *natsWait {
	return &natsWait{connected: make(chan struct{}), closed: make(chan struct{}), reason: make(chan struct{})}
}

// options are the connection options that report to w.
func (w *natsWait) options() []nats.Option {
	return []nats.Option{
		nats.ConnectHandler(func(*nats.Conn) { w.connectedOnce.Do(func() { close(w.connected) }) }),
		nats.ClosedHandler(func(*nats.Conn) { w.closedOnce.Do(func() { close(w.closed) }) }),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			w.lastErr.Store(&err)
			// "no servers available" is all the first attempt says when
			// nothing answered; the next attempt's error says why.
			if !errors.Is(err, nats.ErrNoServers) {
				w.reasonOnce.Do(func() { close(w.reason) })
			}
		}),
	}
}

// waitForNATS waits until nc has connected, which it reports with true.
// Otherwise code is the exit code: 0 when ctx ended first, 1 when the
// connection closed. While it waits it says which URL it cannot reach, or
// that the server refused the connection, and why: as soon as the first
// attempt's reason is known, then every unreachableEvery.
func waitForNATS(ctx context.Context, logger *slog.Logger, env config.Env, nc *nats.Conn, w *natsWait) (connected bool, code int) {
	if nc.IsConnected() {
		return true, ExitOK
	}
	url := config.RedactURL(env.NATSURL)
	warn := func() { warnUnreachable(logger, url, w.lastError(env)) }
	first := time.NewTimer(reasonWait)
	defer first.Stop()
	reason := w.reason
	var (
		tick  *time.Ticker     // repeats the warning; nil until the first
		again <-chan time.Time // tick's channel
	)
	defer func() {
		if tick != nil {
			tick.Stop()
		}
	}()
	firstWarning := func() {
		reason = nil
		if tick == nil {
			warn()
			tick = time.NewTicker(unreachableEvery)
			again = tick.C
		}
	}
	for {
		select {
		case <-w.connected:
			logger.Info("connected to NATS", "url", nc.ConnectedUrlRedacted())
			return true, ExitOK
		case <-w.closed:
			logger.Error("the NATS connection closed before it was established", "url", url, "err", w.lastError(env))
			return false, ExitFailed
		case <-reason:
			firstWarning()
		case <-first.C:
			firstWarning()
		case <-again:
			warn()
		case <-ctx.Done():
			logger.Info("stopped before NATS was reached", "url", url)
			return false, ExitOK // nothing ran
		}
	}
}

// lastError is why the last attempt to connect failed, with env's
// secrets redacted; nil while none has failed.
func (w *natsWait) lastError(env config.Env) error {
	if err := w.lastErr.Load(); err != nil {
		return env.Redact(*err)
	}
	return nil
}

// warnUnreachable warns that NATS at url cannot be reached, or refused
// the connection, and why: err, nil when not known yet.
func warnUnreachable(logger *slog.Logger, url string, err error) {
	attrs := []any{"url", url}
	msg := "cannot reach NATS; retrying until it is up (CHATFLEET_NATS_URL)"
	if err != nil {
		if refusal(err) {
			msg = "NATS refused the connection; retrying until it accepts it"
			attrs = append(attrs, "fix", "check the credentials: CHATFLEET_NATS_USER and CHATFLEET_NATS_PASSWORD, "+
				"CHATFLEET_NATS_TOKEN, CHATFLEET_NATS_CREDS, CHATFLEET_NATS_NKEY or the URL's")
		}
		attrs = append(attrs, "err", err)
	}
	logger.Warn(msg, attrs...)
}

// refusal reports whether err is a NATS server refusing the connection's
// credentials.
func refusal(err error) bool {
	for _, target := range []error{nats.ErrAuthorization, nats.ErrAuthExpired, nats.ErrAuthRevoked, nats.ErrAccountAuthExpired} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
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
	logger.Info("upstream", "worker", cfg.ID, "base_url", config.RedactURL(base), "model", cfg.Manager.DefaultModel, "api_key", keyState(cfg.LLM.APIKey))
	for _, u := range cfg.Upstreams {
		logger.Info("upstream", "worker", cfg.ID, "name", u.Name, "base_url", config.RedactURL(u.LLM.BaseURL), "models", u.Models,
			"weight", max(u.Weight, 1), "api_key", keyState(u.LLM.APIKey))
	}
}

// keyState says whether an API key is set, never what it is.
func keyState(key string) string {
	if key == "" {
		return "none"
	}
	return "set"
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
