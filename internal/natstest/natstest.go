// Package natstest starts real, in-process NATS servers with JetStream for
// tests: one per test, on a random port, with a temporary store, shut down
// when the test ends.
package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/natsserver"
)

// RunServer starts a JetStream server for t, shut down in t.Cleanup.
func RunServer(t testing.TB) *natsserver.Server {
	t.Helper()
	return RunServerIn(t, t.TempDir())
}

// RunServerIn starts a JetStream server storing into dir, so a test can
// restart it on the same data.
func RunServerIn(t testing.TB, dir string) *natsserver.Server {
	t.Helper()
	return RunServerAt(t, "", dir) // "": a free port
}

// Connect opens a connection to url for t, closed in t.Cleanup. It
// reconnects forever, so a test can restart the server under it.
func Connect(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	base := []nats.Option{
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50 * time.Millisecond),
		nats.Timeout(5 * time.Second),
	}
	nc, err := nats.Connect(url, append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream returns a JetStream context on a new connection to url, with
// opts (credentials, say).
func JetStream(t testing.TB, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc := Connect(t, url, opts...)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// RunServerWith starts a JetStream server for t whose options tune
// adjusts (limits, users and permissions), shut down in t.Cleanup.
func RunServerWith(t testing.TB, tune func(*server.Options)) *natsserver.Server {
	t.Helper()
	s, err := natsserver.Start(natsserver.Config{StoreDir: t.TempDir(), Tune: tune})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// RunServerAt starts a JetStream server listening on addr (host:port)
// and storing into dir, shut down in t.Cleanup. Given the address and
// directory of a server that was shut down, it restarts that server where
// its clients reconnect to it.
func RunServerAt(t testing.TB, addr, dir string) *natsserver.Server {
	t.Helper()
	s, err := natsserver.Start(natsserver.Config{Listen: addr, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// RunServerFromConfig starts a JetStream server from the nats-server
// configuration file path (accounts, users, permissions, TLS; e.g. one
// `chatfleet auth` wrote), on a free 127.0.0.1 port and storing into a
// temporary directory whatever the file says, shut down in t.Cleanup.
func RunServerFromConfig(t testing.TB, path string) *natsserver.Server {
	t.Helper()
	s, err := natsserver.Start(natsserver.Config{ConfigFile: path, Listen: "127.0.0.1:-1", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}
