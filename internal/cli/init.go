package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/config"
	"github.com/chatfleet/chatfleet/subjects"
	"github.com/chatfleet/chatfleet/topology"
)

// runInit creates the streams, consumer and buckets a fleet needs, or
// checks those that exist, and exits: producers can then submit before
// any worker runs.
func runInit(ctx context.Context, args []string, io IO) int {
	if len(args) > 0 {
		fmt.Fprintln(io.Err, "chatfleet init takes no arguments; configure it with CHATFLEET_* variables (see chatfleet env)")
		return ExitUsage
	}
	env, names, nc, code := connect(io, "init")
	if code != ExitOK {
		return code
	}
	defer nc.Close()
	top, err := ensureTopology(ctx, env, names, nc)
	if err != nil {
		fmt.Fprintln(io.Err, "chatfleet init:", err)
		return ExitFailed
	}
	c := top.Config
	fmt.Fprintf(io.Out, "topology ready (prefix %s): streams %s, %s, %s; consumer %s; buckets %s\n",
		names.Prefix(), c.Names.JobsStream(), c.Names.RepliesStream(), c.Names.DeadLetterStream(), c.Names.WorkersConsumer(),
		strings.Join(c.Names.Buckets(), ", "))
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
