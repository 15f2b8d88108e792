package cli

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/chatfleet/chatfleet/internal/config"
	"github.com/chatfleet/chatfleet/subjects"
)

func runEnv(_ context.Context, _ []string, io IO) int {
	if err := config.Usage(io.Out); err != nil {
		fmt.Fprintln(io.Err, "chatfleet env:", err)
		return ExitFailed
	}
	return ExitOK
}

// loadEnv loads the configuration, reporting failures.
func loadEnv(io IO, cmd string) (config.Env, bool) {
	env, err := config.Load()
	if err != nil {
		fmt.Fprintf(io.Err, "chatfleet %s: %v\n", cmd, err)
		return env, false
	}
	return env, true
}

// loadServerEnv loads the configuration and its logger for a command that
// runs workers. code is non-zero after a failure it reported.
func loadServerEnv(io IO, cmd string, args []string) (env config.Env, logger *slog.Logger, code int) {
	if len(args) > 0 {
		fmt.Fprintf(io.Err, "chatfleet %s takes no arguments; configure it with CHATFLEET_* variables (see chatfleet env)\n", cmd)
		return env, nil, ExitUsage
	}
	env, ok := loadEnv(io, cmd)
	if !ok {
		return env, nil, ExitUsage
	}
	logger, err := env.Logger(io.Err)
	if err != nil {
		fmt.Fprintf(io.Err, "chatfleet %s: %v\n", cmd, err)
		return env, nil, ExitUsage
	}
	return env, logger, ExitOK
}

// connect loads the configuration and connects to NATS, for a command that
// talks to a running fleet. code is non-zero after a failure it reported;
// otherwise the caller closes nc.
func connect(io IO, cmd string) (env config.Env, names subjects.Names, nc *nats.Conn, code int) {
	env, ok := loadEnv(io, cmd)
	if !ok {
		return env, names, nil, ExitUsage
	}
	names, err := subjects.New(env.Prefix)
	if err != nil {
		fmt.Fprintf(io.Err, "chatfleet %s: %v\n", cmd, err)
		return env, names, nil, ExitUsage
	}
	if nc, err = env.Connect("chatfleet "+cmd, false); err != nil {
		fmt.Fprintf(io.Err, "chatfleet %s: %v\n", cmd, err)
		return env, names, nil, ExitFailed
	}
	return env, names, nc, ExitOK
}
