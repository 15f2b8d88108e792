package manager_test

import (
	"context"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/chatfleet/chatfleet/internal/cli"
)

// childEnv makes the test binary run a chatfleet command instead of the
// tests, so a test can start a worker as a real separate OS process (and
// SIGKILL it).
const childEnv = "CHATFLEET_TEST_CHILD"

func TestMain(m *testing.M) {
	if args := os.Getenv(childEnv); args != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := cli.Run(ctx, strings.Fields(args), cli.IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
		stop()
		os.Exit(code)
	}
	goleak.VerifyTestMain(m)
}
