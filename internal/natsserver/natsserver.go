// Package natsserver runs an embedded nats-server with JetStream: dev mode's
// server and every test's.
package natsserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config configures an embedded server.
type Config struct {
	// Listen is the client address, host:port; port 0 or -1 picks a free one.
	// Defaults to "127.0.0.1:-1".
	Listen string
	// StoreDir holds JetStream's files. Required, unless ConfigFile sets
	// it; when both do, StoreDir wins.
	StoreDir string
	// ConfigFile, when set, is a nats-server configuration file (e.g. one
	// `chatfleet auth` generated) the server starts from: accounts, users,
	// permissions, TLS. Listen and StoreDir, when set, override its
	// listen address and JetStream directory; JetStream is always on.
	// Defaults to none.
	ConfigFile string
	// Name is the server name. Defaults to one chosen by nats-server.
	Name string
	// Logger receives the server's notices, warnings and errors. Defaults to
	// none.
	Logger *slog.Logger
	// Cluster, when set, joins the server to a cluster.
	Cluster *ClusterConfig
	// ReadyTimeout bounds the wait for the server to accept clients.
	// Defaults to 10s.
	ReadyTimeout time.Duration
	// Tune, when set, adjusts the server's options before it starts: a
	// test's limits (max_payload) or users and permissions. Defaults to nil.
	Tune func(*server.Options)
}

// ClusterConfig joins a server to a JetStream cluster.
type ClusterConfig struct {
	Name   string   // cluster name
	Listen string   // route address host:port
	Routes []string // nats-route://host:port of the other members
}

// Server is a running embedded server.
type Server struct {
	s   *server.Server
	cfg Config
}

// Start starts a server and waits until it accepts clients.
func Start(cfg Config) (*Server, error) {
	opts, err := cfg.options()
	if err != nil {
		return nil, err
	}
	if opts.Port > 0 {
		// Fail at once, with the reason, when the address is taken;
		// nats-server would only report "not ready" after ReadyTimeout.
		ln, err := net.Listen("tcp", net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port)))
		if err != nil {
			return nil, fmt.Errorf("natsserver: %w", err)
		}
		_ = ln.Close()
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsserver: %w", err)
	}
	if cfg.Logger != nil {
		s.SetLoggerV2(slogAdapter{cfg.Logger}, false, false, false)
	}
	s.Start()
	wait := cfg.ReadyTimeout
	if wait <= 0 {
		wait = 10 * time.Second
	}
	if !s.ReadyForConnections(wait) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, fmt.Errorf("natsserver: not ready for connections on %s after %s", s.Addr(), wait)
	}
	return &Server{s: s, cfg: cfg}, nil
}

// Reload reads the server's configuration file again and applies what
// changed (accounts, users, permissions), as nats-server --signal reload
// does, keeping the address the server listens on and its JetStream
// directory.
func (s *Server) Reload() error {
	if s.cfg.ConfigFile == "" {
		return errors.New("natsserver: Reload needs a server started from a configuration file")
	}
	opts, err := s.cfg.options()
	if err != nil {
		return err
	}
	if addr, ok := s.s.Addr().(*net.TCPAddr); ok {
		opts.Port = addr.Port
	}
	if err := s.s.ReloadOptions(opts); err != nil {
		return fmt.Errorf("natsserver: reload: %w", err)
	}
	return nil
}

func (cfg Config) options() (*server.Options, error) {
	opts := &server.Options{}
	if cfg.ConfigFile != "" {
		var err error
		if opts, err = server.ProcessConfigFile(cfg.ConfigFile); err != nil {
			return nil, fmt.Errorf("natsserver: %w", err)
		}
	}
	if cfg.StoreDir != "" {
		opts.StoreDir = cfg.StoreDir
	}
	if opts.StoreDir == "" {
		return nil, errors.New("natsserver: StoreDir is required")
	}
	listen := cfg.Listen
	if listen == "" && cfg.ConfigFile == "" {
		listen = "127.0.0.1:-1"
	}
	if listen != "" {
		host, port, err := splitHostPort(listen)
		if err != nil {
			return nil, fmt.Errorf("natsserver: listen address %q: %w", listen, err)
		}
		opts.Host, opts.Port = host, port
	}
	if cfg.Name != "" {
		opts.ServerName = cfg.Name
	}
	opts.JetStream = true
	opts.NoSigs = true
	opts.NoLog = cfg.Logger == nil
	if c := cfg.Cluster; c != nil {
		chost, cport, err := splitHostPort(c.Listen)
		if err != nil {
			return nil, fmt.Errorf("natsserver: cluster address %q: %w", c.Listen, err)
		}
		opts.Cluster = server.ClusterOpts{Name: c.Name, Host: chost, Port: cport}
		opts.Routes = server.RoutesFromStr(strings.Join(c.Routes, ","))
	}
	if cfg.Tune != nil {
		cfg.Tune(opts)
	}
	return opts, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, err
	}
	if port == 0 {
		port = -1 // nats-server's "pick a free port"
	}
	return host, port, nil
}

// ClientURL is the URL clients connect to, e.g. nats://127.0.0.1:4222.
func (s *Server) ClientURL() string { return s.s.ClientURL() }

// ClusterAddr is the route address the server listens on, when clustered.
func (s *Server) ClusterAddr() *net.TCPAddr { return s.s.ClusterAddr() }

// NATS returns the underlying server, for tests that inspect it.
func (s *Server) NATS() *server.Server { return s.s }

// Shutdown stops the server and waits until it has stopped. Safe to call twice.
func (s *Server) Shutdown() {
	s.s.Shutdown()
	s.s.WaitForShutdown()
}

// slogAdapter makes a slog.Logger a nats-server logger.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Noticef(format string, v ...any) { a.l.Info(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Warnf(format string, v ...any)   { a.l.Warn(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Fatalf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Errorf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Debugf(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Tracef(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
