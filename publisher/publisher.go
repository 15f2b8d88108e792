package publisher

import (
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/chatfleet/chatfleet/subjects"
)

// Publisher submits jobs and reads replies over one NATS connection. It is
// safe for concurrent use.
type Publisher struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	names  subjects.Names
	opts   options
	tracer trace.Tracer
}

type options struct {
	prefix      string
	apiPrefix   string // JetStream API prefix, ending in "."
	waitTimeout time.Duration
	idleProbe   time.Duration
	tracer      trace.TracerProvider
}

// Option configures a Publisher.
type Option func(*options) error

// WithPrefix sets the subject prefix. Defaults to "chat".
func WithPrefix(prefix string) Option {
	return func(o *options) error {
		if _, err := subjects.New(prefix); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidOption, err)
		}
		o.prefix = prefix
		return nil
	}
}

// WithAPIPrefix sets the prefix of the JetStream API subjects the
// publisher sends its requests to (direct gets and consumers of the
// replies stream). A producer in a tenant account reaches the fleet's
// JetStream API under the prefix its account imports it with (`chatfleet
// auth` generates "JS.<prefix>.API"). Defaults to "$JS.API".
func WithAPIPrefix(prefix string) Option {
	return func(o *options) error {
		prefix = strings.TrimSuffix(prefix, ".")
		if !validAPIPrefix(prefix) {
			return fmt.Errorf("%w: API prefix %q: want tokens separated by dots, without wildcards or spaces", ErrInvalidOption, prefix)
		}
		o.apiPrefix = prefix + "."
		return nil
	}
}

// validAPIPrefix reports whether prefix is a subject without wildcards
// or empty tokens.
func validAPIPrefix(prefix string) bool {
	for _, tok := range strings.Split(prefix, ".") {
		if tok == "" || strings.ContainsAny(tok, "*> \t\r\n") {
			return false
		}
	}
	return true
}

// WithWaitTimeout bounds each wait for the next event when the caller's
// context has no deadline. Defaults to 5m.
func WithWaitTimeout(d time.Duration) Option {
	return positive("wait timeout", d, func(o *options) *time.Duration { return &o.waitTimeout })
}

// WithIdleProbe sets how long a reply waits on its live subscription before
// checking the replies stream for events it may have missed (after a
// reconnect, say); each check that finds nothing doubles the wait, up to
// 30s. Defaults to 2s.
func WithIdleProbe(d time.Duration) Option {
	return positive("idle probe", d, func(o *options) *time.Duration { return &o.idleProbe })
}

// positive is an Option that sets the duration field of options to d,
// which must be positive.
func positive(what string, d time.Duration, field func(*options) *time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("%w: %s must be positive", ErrInvalidOption, what)
		}
		*field(o) = d
		return nil
	}
}

// WithTracerProvider sets where the publisher's spans go. Each Submit
// starts a producer span and sends its W3C trace context in the job's
// headers, so the worker's spans join the caller's trace. Defaults to the
// global provider (otel.GetTracerProvider()).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) error {
		if tp == nil {
			return fmt.Errorf("%w: nil tracer provider", ErrInvalidOption)
		}
		o.tracer = tp
		return nil
	}
}

// New returns a Publisher using nc.
func New(nc *nats.Conn, opts ...Option) (*Publisher, error) {
	o := options{prefix: subjects.DefaultPrefix, apiPrefix: jetstream.DefaultAPIPrefix, waitTimeout: 5 * time.Minute, idleProbe: 2 * time.Second, tracer: otel.GetTracerProvider()}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	names, err := subjects.New(o.prefix)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	js, err := jetstream.NewWithAPIPrefix(nc, o.apiPrefix)
	if err != nil {
		return nil, err
	}
	return &Publisher{nc: nc, js: js, names: names, opts: o, tracer: o.tracer.Tracer("github.com/chatfleet/chatfleet/publisher")}, nil
}

// Names returns the names the publisher uses.
func (p *Publisher) Names() subjects.Names { return p.names }

// lookupTimeout bounds one JetStream API call of the publisher, so a lost
// answer (a dropped connection, a stream changing leader) costs a retry,
// not the reader's whole wait.
const lookupTimeout = 5 * time.Second
