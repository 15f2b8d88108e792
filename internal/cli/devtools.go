package cli

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/chatfleet/chatfleet/tools"
	"github.com/chatfleet/chatfleet/tools/devtools"
)

// devToolServer is dev's tool server: the example tools (tools/devtools)
// on the embedded NATS, on a connection of its own, so that a job that
// asks for fleet tools finds them.
type devToolServer struct {
	nc     *nats.Conn
	srv    *tools.Server
	names  []string
	logger *slog.Logger
}

// startDevTools serves devtools.All on the NATS server at url with the
// fleet's prefix. It logs a failure and returns nil.
func startDevTools(url, prefix string, logger *slog.Logger) *devToolServer {
	nc, err := nats.Connect(url, nats.Name("chatfleet dev tools"), nats.MaxReconnects(-1))
	if err != nil {
		logger.Error("cannot connect the example tools", "err", err)
		return nil
	}
	all := devtools.All()
	srv, err := tools.Serve(nc, tools.Config{Prefix: prefix, Logger: logger}, all...)
	if err != nil {
		nc.Close()
		logger.Error("cannot serve the example tools", "err", err)
		return nil
	}
	d := &devToolServer{nc: nc, srv: srv, logger: logger}
	for _, t := range all {
		d.names = append(d.names, t.Name)
	}
	return d
}

// stop lets the calls in flight finish (for up to grace), then closes the
// connection: after the workers, which may be waiting for a call, and
// before NATS.
func (d *devToolServer) stop(grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := d.srv.Stop(ctx); err != nil {
		d.logger.Warn("stopping the example tools", "err", fmt.Sprint(err))
	}
	d.nc.Close()
}
