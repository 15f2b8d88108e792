// Command chatfleet runs and talks to a chatfleet: dev mode, workers and
// init; ask and cancel for producers; dlq, status and upstream check for
// operators; env for the configuration. Run it without arguments for the
// list (internal/cli has the commands).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/chatfleet/chatfleet/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], cli.IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	stop()
	os.Exit(code)
}
