package cli

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/chatfleet/chatfleet/gateway"
	"github.com/chatfleet/chatfleet/internal/config"
	"github.com/chatfleet/chatfleet/internal/telemetry"
)

// runGateway runs the OpenAI-compatible gateway, or one of its key
// commands (key, keys, revoke).
func runGateway(ctx context.Context, args []string, io IO) int {
	if len(args) > 0 {
		switch args[0] {
		case "key":
			return runGatewayKey(ctx, args[1:], io)
		case "keys":
			return runGatewayKeys(ctx, args[1:], io)
		case "revoke":
			return runGatewayRevoke(ctx, args[1:], io)
		}
	}
	env, logger, code := loadServerEnv(io, "gateway", args)
	if code != ExitOK {
		return code
	}
	nc, err := env.Connect("chatfleet gateway", true)
	if err != nil {
		logger.Error("cannot connect to NATS", "url", config.RedactURL(env.NATSURL), "err", err)
		return ExitFailed
	}
	defer nc.Close()
	g, tel, err := startGateway(ctx, env, logger, nc)
	if err != nil {
		logger.Error("gateway not started", "err", err, inUse(err, "CHATFLEET_GATEWAY_ADDR"))
		return ExitFailed
	}
	defer shutdownTelemetry(tel)
	if env.HTTPAddr != "" {
		admin, err := serveAdmin(env.HTTPAddr, tel)
		if err != nil {
			logger.Error("cannot serve /healthz and /metrics", "err", err, inUse(err, "CHATFLEET_HTTP_ADDR"))
			_ = g.Stop(context.Background())
			return ExitFailed
		}
		defer func() { _ = admin.Close() }()
	}
	logger.Info("gateway started", "addr", g.Addr().String(), "admin", env.HTTPAddr)
	<-ctx.Done()
	return stopGateway(logger, env, g)
}

// serveAdmin serves the gateway process's /healthz and /metrics on addr,
// apart from the API: keep it off public interfaces.
func serveAdmin(addr string, tel *telemetry.Telemetry) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.Handle("GET /metrics", tel.Metrics)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }() // owned by runGateway: Close ends it
	return srv, nil
}

// startGateway starts a gateway on nc with env's settings and telemetry.
func startGateway(ctx context.Context, env config.Env, logger *slog.Logger, nc *nats.Conn) (*gateway.Gateway, *telemetry.Telemetry, error) {
	cfg, err := env.Gateway(logger)
	if err != nil {
		return nil, nil, err
	}
	tel, err := telemetry.Setup(ctx, "chatfleet-gateway", "gateway")
	if err != nil {
		return nil, nil, err
	}
	cfg.TracerProvider, cfg.MeterProvider = tel.Tracer, tel.Meter
	g, err := gateway.New(cfg, nc)
	if err == nil {
		err = g.Start(ctx)
	}
	if err != nil {
		shutdownTelemetry(tel)
		return nil, nil, err
	}
	if cfg.Keys == nil && !cfg.KeysFromBucket {
		logger.Warn("the gateway has no API keys: it serves tenant "+cfg.Tenant+" to anyone who reaches it, on loopback only",
			"addr", g.Addr().String())
	}
	return g, tel, nil
}

// stopGateway lets open requests finish within the shutdown grace.
func stopGateway(logger *slog.Logger, env config.Env, g *gateway.Gateway) int {
	ctx, cancel := context.WithTimeout(context.Background(), env.ShutdownGrace)
	defer cancel()
	if err := g.Stop(ctx); err != nil {
		logger.Warn("gateway stopped", "err", err)
		return ExitFailed
	}
	return ExitOK
}

// startDevGateway starts dev's gateway on a connection of its own to dev's
// NATS server; stop stops it within the shutdown grace and closes the
// connection.
func startDevGateway(ctx context.Context, env config.Env, logger *slog.Logger, natsURL string) (*gateway.Gateway, func(), int) {
	env.NATSURL = natsURL
	nc, err := env.Connect("chatfleet dev gateway", false)
	if err != nil {
		logger.Error("cannot connect the gateway to NATS", "err", err)
		return nil, nil, ExitFailed
	}
	g, tel, err := startGateway(ctx, env, logger, nc)
	if err != nil {
		nc.Close()
		logger.Error("gateway not started", "err", err, inUse(err, "CHATFLEET_GATEWAY_ADDR"))
		return nil, nil, ExitFailed
	}
	return g, func() {
		stopGateway(logger, env, g)
		shutdownTelemetry(tel)
		nc.Close()
	}, ExitOK
}
