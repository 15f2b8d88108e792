package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/chatfleet/chatfleet/worker"
)

func runWorker(ctx context.Context, args []string, io IO) int {
	if len(args) > 0 {
		fmt.Fprintln(io.Err, "chatfleet worker takes no arguments; configure it with CHATFLEET_* variables (see chatfleet env)")
		return ExitUsage
	}
	env, ok := loadEnv(io, "worker")
	if !ok {
		return ExitUsage
	}
	logger, err := env.Logger(io.Err)
	if err != nil {
		fmt.Fprintln(io.Err, "chatfleet worker:", err)
		return ExitUsage
	}
	nc, err := env.Connect("chatfleet worker", true)
	if err != nil {
		logger.Error("cannot connect to NATS", "err", err)
		return ExitFailed
	}
	defer nc.Close()
	w, err := worker.New(env.Worker(env.LLM(), logger), nc)
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
