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
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("%w: wait timeout must be positive", ErrInvalidOption)
		}
		o.waitTimeout = d
		return nil
	}
}

// WithIdleProbe sets how long a reply waits on its live subscription before
// checking the replies stream for events it may have missed (after a
// reconnect, say); each check that finds nothing doubles the wait, up to
// 30s. Defaults to 2s.
func WithIdleProbe(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("%w: idle probe must be positive", ErrInvalidOption)
		}
		o.idleProbe = d
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

// repliesStream returns the replies stream, looked up once. No lock is
// held during the lookup: one slow lookup must not stall every reply.
func (p *Publisher) repliesStream(ctx context.Context) (jetstream.Stream, error) {
	p.mu.Lock()
	s := p.replies
	p.mu.Unlock()
	if s != nil {
		return s, nil
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	s, err := p.js.Stream(ctx, p.names.RepliesStream())
	if err != nil {
		return nil, fmt.Errorf("publisher: replies stream %s (has a worker created the topology?): %w", p.names.RepliesStream(), err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.replies == nil {
		p.replies = s
	}
	return p.replies, nil
}

// cancelBucket returns the cancel bucket, looked up once, like repliesStream.
func (p *Publisher) cancelBucket(ctx context.Context) (jetstream.KeyValue, error) {
	p.mu.Lock()
	kv := p.cancels
	p.mu.Unlock()
	if kv != nil {
		return kv, nil
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	kv, err := p.js.KeyValue(ctx, p.names.CancelBucket())
	if err != nil {
		return nil, fmt.Errorf("publisher: cancel bucket %s (has a worker created the topology?): %w", p.names.CancelBucket(), err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancels == nil {
		p.cancels = kv
	}
	return p.cancels, nil
}
