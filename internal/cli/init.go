package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/config"
	"github.com/chatfleet/chatfleet/subjects"
	"github.com/chatfleet/chatfleet/topology"
)

// runInit creates the streams and buckets a fleet needs, or checks those
// that exist, and exits: producers can then submit before any worker runs.
// With --migrate it first brings a fleet of an older layout to this
// version's, saying what it changes (--dry-run: only says).
func runInit(ctx context.Context, args []string, io IO) int {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	fs.SetOutput(io.Err)
	migrate := fs.Bool("migrate", false, "migrate a fleet of an older layout to this version's (see the README's Upgrades)")
	dryRun := fs.Bool("dry-run", false, "with --migrate: show what would change, change nothing")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || (*dryRun && !*migrate) {
		fmt.Fprintln(io.Err, "usage: chatfleet init [--migrate [--dry-run]]; configure it with CHATFLEET_* variables (see chatfleet env); "+
			"init takes no arguments")
		return ExitUsage
	}
	env, names, nc, code := connect(io, "init")
	if code != ExitOK {
		return code
	}
	defer nc.Close()
	if *migrate {
		if code := runMigrate(ctx, env, names, nc, *dryRun, io); code != ExitOK || *dryRun {
			return code
		}
	}
	top, err := ensureTopology(ctx, env, names, nc)
	if err != nil {
		fmt.Fprintln(io.Err, "chatfleet init:", err)
		return ExitFailed
	}
	c := top.Config
	fmt.Fprintf(io.Out, "topology ready (prefix %s): streams %s, %s, %s; consumers %s<tenant>_<priority>, made as jobs arrive; buckets %s\n",
		names.Prefix(), c.Names.JobsStream(), c.Names.RepliesStream(), c.Names.DeadLetterStream(), c.Names.QueueConsumerPrefix(),
		strings.Join(c.Names.Buckets(), ", "))
	return ExitOK
}

// runMigrate prints the migration's steps and applies them unless dryRun.
func runMigrate(ctx context.Context, env config.Env, names subjects.Names, nc *nats.Conn, dryRun bool, io IO) int {
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Fprintln(io.Err, "chatfleet init:", err)
		return ExitFailed
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cfg := env.Topology()
	cfg.Names = names
	m, err := topology.PlanMigration(ctx, js, cfg)
	if err != nil {
		fmt.Fprintln(io.Err, "chatfleet init --migrate:", env.Redact(err))
		return ExitFailed
	}
	if len(m.Steps) == 0 {
		fmt.Fprintln(io.Out, "migration: nothing to change; the fleet has this version's layout")
		return ExitOK
	}
	verb := "migration applies"
	if dryRun {
		verb = "migration would apply (dry run, nothing changed)"
	}
	fmt.Fprintf(io.Out, "%s:\n", verb)
	for i, s := range m.Steps {
		fmt.Fprintf(io.Out, "  %d. %s\n", i+1, s)
	}
	if dryRun {
		return ExitOK
	}
	if err := m.Apply(ctx); err != nil {
		fmt.Fprintln(io.Err, "chatfleet init --migrate:", env.Redact(err))
		return ExitFailed
	}
	fmt.Fprintln(io.Out, "migration done")
	return ExitOK
}

// ensureTopology creates or checks the topology env configures, as every
// worker does when it starts. Its error is redacted and, for a resource
// configured differently, says which variables to change.
func ensureTopology(ctx context.Context, env config.Env, names subjects.Names, nc *nats.Conn) (*topology.Topology, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cfg := env.Topology()
	cfg.Names = names
	top, err := topology.Ensure(ctx, js, cfg)
	return top, env.Redact(env.ExplainTopology(err))
}
