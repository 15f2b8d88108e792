package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/subjects"
)

func runCancel(ctx context.Context, args []string, io IO) int {
	fs := flag.NewFlagSet("cancel", flag.ContinueOnError)
	fs.SetOutput(io.Err)
	tenant := fs.String("tenant", protocol.DefaultTenant, "tenant of the request")
	fs.Usage = func() {
		fmt.Fprintln(io.Err, "Usage: chatfleet cancel [--tenant T] ID")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return ExitUsage
	}
	id := fs.Arg(0)
	for _, name := range [][2]string{{"tenant", *tenant}, {"id", id}} {
		if err := subjects.ValidName(name[0], name[1]); err != nil {
			fmt.Fprintln(io.Err, "chatfleet cancel:", err)
			return ExitUsage
		}
	}
	env, _, nc, code := connect(io, "cancel")
	if code != ExitOK {
		return code
	}
	defer nc.Close()
	pub, err := publisher.New(nc, env.Publisher()...)
	if err != nil {
		fmt.Fprintln(io.Err, "chatfleet cancel:", err)
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	switch err := pub.Cancel(ctx, *tenant, id); {
	case errors.Is(err, publisher.ErrAlreadyFinished):
		fmt.Fprintf(io.Err, "chatfleet cancel: request %s/%s has already finished\n", *tenant, id)
		return ExitFailed
	case err != nil:
		fmt.Fprintln(io.Err, "chatfleet cancel:", err)
		return ExitFailed
	}
	fmt.Fprintf(io.Out, "cancel requested for %s/%s\n", *tenant, id)
	return ExitOK
}
