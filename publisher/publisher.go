package publisher

import (
	"context"
	"fmt"
	"sync"
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

	mu      sync.Mutex
	replies jetstream.Stream   // looked up on first use
	cancels jetstream.KeyValue // looked up on first use
}

type options struct {
	prefix      string
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
	o := options{prefix: subjects.DefaultPrefix, waitTimeout: 5 * time.Minute, idleProbe: 2 * time.Second, tracer: otel.GetTracerProvider()}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	names, err := subjects.New(o.prefix)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	js, err := jetstream.New(nc)
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

// repliesStream returns the replies stream, looked up once.
func (p *Publisher) repliesStream(ctx context.Context) (jetstream.Stream, error) {
	return lookupOnce(ctx, p, &p.replies, "replies stream", p.names.RepliesStream(), p.js.Stream)
}

// cancelBucket returns the cancel bucket, looked up once.
func (p *Publisher) cancelBucket(ctx context.Context) (jetstream.KeyValue, error) {
	return lookupOnce(ctx, p, &p.cancels, "cancel bucket", p.names.CancelBucket(), p.js.KeyValue)
}

// lookupOnce returns *slot, filling it with lookup(name) on first use. No
// lock is held during the lookup: one slow lookup must not stall every
// reply.
func lookupOnce[T comparable](ctx context.Context, p *Publisher, slot *T, what, name string, lookup func(context.Context, string) (T, error)) (T, error) {
	var zero T
	p.mu.Lock()
	v := *slot
	p.mu.Unlock()
	if v != zero {
		return v, nil
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	v, err := lookup(ctx, name)
	if err != nil {
		return zero, fmt.Errorf("publisher: %s %s (%s): %w", what, name, topologyHint, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if *slot == zero {
		*slot = v
	}
	return *slot, nil
}
