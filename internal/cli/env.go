package cli

import (
	"context"
	"fmt"

	"github.com/chatfleet/chatfleet/internal/config"
)

func runEnv(_ context.Context, _ []string, io IO) int {
	if err := config.Usage(io.Out); err != nil {
		fmt.Fprintln(io.Err, "chatfleet env:", err)
		return ExitFailed
	}
	return ExitOK
}

// loadEnv loads the configuration and its logger, reporting failures.
func loadEnv(io IO, cmd string) (config.Env, bool) {
	env, err := config.Load()
	if err != nil {
		fmt.Fprintf(io.Err, "chatfleet %s: %v\n", cmd, err)
		return env, false
	}
	return env, true
}
