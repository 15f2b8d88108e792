package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/chatfleet/chatfleet/internal/defaults"
	"github.com/chatfleet/chatfleet/subjects"
)

// Config configures a Gateway. Each field's comment ends with its default.
type Config struct {
	// Addr is where the gateway listens. Without Keys it must be a
	// loopback address. Defaults to "127.0.0.1:8080".
	Addr string
	// Names derives subjects. Defaults to subjects.Default().
	Names subjects.Names
	// Keys maps API keys (Authorization: Bearer) to tenants. Nil, with
	// KeysFromBucket false, serves one tenant, Tenant, to anyone who can
	// reach Addr: allowed on loopback only. Defaults to nil.
	Keys *KeyStore
	// KeysFromBucket reads the keys from the fleet's API keys bucket
	// instead (Names.APIKeysBucket; AddKey, RevokeKey), following its
	// changes live. Start fails when the bucket does not exist. Defaults
	// to false.
	KeysFromBucket bool
	// Tenant is the tenant of every request when Keys is nil. Defaults to
	// "default".
	Tenant string
	// MaxBodyBytes bounds a request body. Defaults to 1 MiB.
	MaxBodyBytes int64
	// ReadHeaderTimeout bounds reading a request's headers. Defaults to 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection idle this long. Defaults
	// to 2m.
	IdleTimeout time.Duration
	// CORSOrigins may call the gateway from a browser (EventSource on the
	// resume route, say); "*" allows any. Defaults to none.
	CORSOrigins []string
	// ResumeSecret signs resume tokens. Replicas behind one load balancer
	// need the same secret for a token from one to work on another.
	// Defaults to a random secret of this process.
	ResumeSecret []byte
	// ResumeTokenTTL is how long a resume token works. Defaults to 15m,
	// the replies stream's default retention.
	ResumeTokenTTL time.Duration
	// ResumeGrace is how long a request whose streaming client went away
	// keeps running, waiting for the client to resume it (on any replica)
	// before it is cancelled. Negative cancels at once. Defaults to 10s.
	ResumeGrace time.Duration
	// WriteStall bounds one write of a stream to its client: a client
	// that stops reading (its connection open, its buffers full) is
	// treated as gone once a write waits this long, so it holds no
	// handler and no reply subscription for ever. Defaults to 30s.
	WriteStall time.Duration
	// WorkersFresh is how long a check that workers are running is
	// trusted before the next request checks again. Defaults to 2s.
	WorkersFresh time.Duration
	// WorkersWait is how long the check waits for a worker's first answer
	// before it concludes none runs (a busy worker answers late).
	// Defaults to 1s.
	WorkersWait time.Duration
	// Logger receives the gateway's logs. API keys, prompts and answers
	// are never logged. Defaults to slog.Default().
	Logger *slog.Logger
	// TracerProvider makes the server spans; an incoming traceparent
	// continues through the job to the worker. Defaults to a no-op.
	TracerProvider trace.TracerProvider
	// MeterProvider makes the chatfleet.gateway.* metrics. Defaults to a
	// no-op.
	MeterProvider metric.MeterProvider
}

// ErrInvalidConfig is wrapped by every configuration error.
var ErrInvalidConfig = errors.New("gateway: invalid config")

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Names == (subjects.Names{}) {
		c.Names = subjects.Default()
	}
	defaults.Set(&c.Addr, "127.0.0.1:8080")
	defaults.Set(&c.Tenant, "default")
	defaults.Set(&c.MaxBodyBytes, 1<<20)
	defaults.Set(&c.ReadHeaderTimeout, 10*time.Second)
	defaults.Set(&c.IdleTimeout, 2*time.Minute)
	defaults.Set(&c.ResumeTokenTTL, 15*time.Minute)
	defaults.Set(&c.WorkersFresh, 2*time.Second)
	defaults.Set(&c.WorkersWait, time.Second)
	defaults.Set(&c.ResumeGrace, 10*time.Second)
	defaults.Set(&c.WriteStall, 30*time.Second)
	defaults.Observers(&c.Logger, &c.TracerProvider, &c.MeterProvider)
	return c
}

func (c Config) validate() error {
	if err := subjects.ValidName("tenant", c.Tenant); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if c.Keys != nil && c.KeysFromBucket {
		return fmt.Errorf("%w: Keys and KeysFromBucket are exclusive", ErrInvalidConfig)
	}
	if c.Keys == nil && !c.KeysFromBucket && !loopback(c.Addr) {
		return fmt.Errorf("%w: without API keys the gateway serves anyone who reaches it, so it listens on loopback only; %q is not (configure keys, or listen on 127.0.0.1)", ErrInvalidConfig, c.Addr)
	}
	return nil
}

// loopback reports whether addr (host:port) is a loopback address.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
