package cli

import (
	"context"
	"log/slog"

	"github.com/chatfleet/chatfleet/internal/config"
	"github.com/chatfleet/chatfleet/llm/llmtest"
)

// runSimulate serves dev mode's simulated model alone, so a fleet
// deployed without an LLM (the compose quickstart) has an upstream to
// call. It listens on CHATFLEET_DEV_MODEL_LISTEN until ctx ends.
func runSimulate(ctx context.Context, args []string, io IO) int {
	env, logger, code := loadServerEnv(io, "simulate", args)
	if code != ExitOK {
		return code
	}
	sim, ok := listenSimulated(env, logger)
	if !ok {
		return ExitFailed
	}
	defer sim.Close()
	logger.Warn("SIMULATED MODEL: answers come from chatfleet's built-in simulated model, not an LLM", "base_url", sim.URL())
	<-ctx.Done()
	return ExitOK
}

// listenSimulated starts the simulated model on CHATFLEET_DEV_MODEL_LISTEN
// with dev's length and pace, using the tools a request offers; it logs a
// failure and reports it with false.
func listenSimulated(env config.Env, logger *slog.Logger) (*llmtest.Server, bool) {
	sim, err := llmtest.Listen(env.DevModelListen, llmtest.WithTokens(env.DevTokens),
		llmtest.WithDelay(env.DevTokenDelay, env.DevTokenDelay), llmtest.WithToolUse())
	if err != nil {
		logger.Error("cannot start the simulated model", "listen", env.DevModelListen, "err", err, inUse(err, "CHATFLEET_DEV_MODEL_LISTEN"))
		return nil, false
	}
	return sim, true
}
