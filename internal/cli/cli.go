// Package cli implements the chatfleet command: dev, worker, init, ask,
// cancel, dlq, tenant, cache, status, upstream, gateway, simulate, auth and env.
package cli

import (
	"context"
	"fmt"
	"io"
)

// Exit codes.
const (
	ExitOK        = 0 // done
	ExitFailed    = 1 // an error event, or any other failure
	ExitUsage     = 2 // bad command line
	ExitCancelled = 3 // the request ended cancelled
)

// topologyHint says how to create the streams and buckets a command found
// missing.
const topologyHint = "run a worker or `chatfleet init` to create them"

// IO is where a command reads and writes.
type IO struct {
	In       io.Reader
	Out, Err io.Writer
}

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, io IO) int
}

func commands() []command {
	return []command{
		{"dev", "run NATS, workers and (without an upstream) a simulated model in one process", runDev},
		{"worker", "run one worker against CHATFLEET_NATS_URL", runWorker},
		{"init", "create (or check) the streams and buckets, then exit; --migrate: migrate an older layout", runInit},
		{"ask", "submit a job and print the answer as it streams: ask [flags] PROMPT", runAsk},
		{"cancel", "cancel a request: cancel [--tenant T] ID", runCancel},
		{"dlq", "dead-lettered jobs: dlq ls | show SEQ | replay SEQ", runDLQ},
		{"tenant", "tenants' limits and usage: tenant set | ls | show | pause | resume | cancel | rm NAME", runTenant},
		{"cache", "the answer cache: cache purge [--tenant T] [--key K]", runCache},
		{"status", "the fleet: queue, dead letters, workers and their slots [--json] [--watch]", runStatus},
		{"upstream", "upstream check: probe the configured upstream and list what it supports; upstream limits set|show|rm: its fleet-wide limits", runUpstream},
		{"gateway", "run the OpenAI-compatible HTTP gateway; gateway key|keys|revoke manage its API keys", runGateway},
		{"simulate", "serve dev's simulated model alone on CHATFLEET_DEV_MODEL_LISTEN: an upstream for trying a fleet", runSimulate},
		{"auth", "the nats-server configuration and identities of a fleet shared by tenants: auth --secrets DIR TENANT...", runAuth},
		{"env", "print every configuration variable with its default", runEnv},
	}
}

// Run runs the command named by args[0] and returns the exit code.
func Run(ctx context.Context, args []string, io IO) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(io.Err)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], io)
		}
	}
	fmt.Fprintf(io.Err, "chatfleet: unknown command %q\n\n", args[0])
	usage(io.Err)
	return ExitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "chatfleet: LLM chat jobs on NATS JetStream\n\nUsage: chatfleet COMMAND [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nConfiguration comes from CHATFLEET_* variables: see `chatfleet env`.")
}
