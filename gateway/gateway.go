package gateway

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"

	"github.com/chatfleet/chatfleet/internal/kvmirror"
	"github.com/chatfleet/chatfleet/publisher"
)

// Gateway serves the OpenAI chat-completions API in front of a fleet.
// Create it with New, then Start and Stop it (or mount Handler in a server
// of your own).
type Gateway struct {
	cfg      Config
	nc       *nats.Conn
	pub      *publisher.Publisher
	fleet    *fleet
	tracer   trace.Tracer
	metrics  *metrics
	secret   []byte
	handler  http.Handler
	keys     *KeyStore        // nil: one tenant, no keys
	keyWatch *kvmirror.Mirror // the API keys bucket, with KeysFromBucket

	mu        sync.Mutex
	stopping  bool           // set by Stop: no request is counted in after it
	handlers  sync.WaitGroup // requests being handled; Stop waits for them
	later     sync.WaitGroup // cancels waiting for a resume, started by handlers; Stop waits for them after the handlers
	srv       *http.Server
	ln        net.Listener
	served    chan struct{} // closed when Serve returns
	startOnce sync.Once
	stopOnce  sync.Once
}

// New returns a gateway that submits jobs over nc. It does no I/O.
func New(cfg Config, nc *nats.Conn) (*Gateway, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if nc == nil {
		return nil, fmt.Errorf("%w: a NATS connection is required", ErrInvalidConfig)
	}
	pub, err := publisher.New(nc, publisher.WithPrefix(cfg.Names.Prefix()), publisher.WithTracerProvider(cfg.TracerProvider))
	if err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, nc: nc, pub: pub, secret: cfg.ResumeSecret, served: make(chan struct{}), keys: cfg.Keys,
		fleet:  &fleet{nc: nc, prefix: cfg.Names.Prefix(), fresh: cfg.WorkersFresh, wait: cfg.WorkersWait},
		tracer: cfg.TracerProvider.Tracer("github.com/chatfleet/chatfleet/gateway")}
	if len(g.secret) == 0 {
		g.secret = make([]byte, 32)
		if _, err := rand.Read(g.secret); err != nil {
			return nil, err
		}
	}
	if g.metrics, err = newMetrics(cfg.MeterProvider); err != nil {
		return nil, fmt.Errorf("gateway: metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", g.observed(g.handleCompletions))
	mux.HandleFunc("GET /v1/chat/completions/{id}/stream", g.observed(g.handleResume))
	mux.HandleFunc("GET /v1/models", g.observed(g.handleModels))
	g.handler = g.cors(mux)
	return g, nil
}

// Handler returns the gateway's routes, to mount in a server of one's own.
func (g *Gateway) Handler() http.Handler { return g.handler }

// Start reads the API keys bucket (with KeysFromBucket), listens on
// Config.Addr and serves in the background until Stop.
func (g *Gateway) Start(ctx context.Context) error {
	err := errors.New("gateway: already started")
	g.startOnce.Do(func() {
		if g.cfg.KeysFromBucket {
			if g.keys, g.keyWatch, err = g.watchKeyBucket(ctx); err != nil {
				close(g.served)
				return
			}
		}
		var lc net.ListenConfig
		g.ln, err = lc.Listen(ctx, "tcp", g.cfg.Addr)
		if err != nil {
			err = fmt.Errorf("gateway: listen on %s (CHATFLEET_GATEWAY_ADDR): %w", g.cfg.Addr, err)
			g.stopKeyWatch()
			close(g.served)
			return
		}
		g.srv = &http.Server{Handler: g.handler, ReadHeaderTimeout: g.cfg.ReadHeaderTimeout, IdleTimeout: g.cfg.IdleTimeout}
		go func() { // owned by the gateway: Stop shuts the server down and waits for served
			defer close(g.served)
			_ = g.srv.Serve(g.ln)
		}()
		g.cfg.Logger.Info("gateway listening", "addr", g.ln.Addr().String(), "auth", g.keys != nil)
	})
	return err
}

// Addr is where the gateway listens, once started.
func (g *Gateway) Addr() net.Addr {
	if g.ln == nil {
		return nil
	}
	return g.ln.Addr()
}

// Stop stops accepting requests and lets open ones (streams included)
// finish until ctx ends; then it closes what is left, which cancels those
// requests like a client that went away. Safe to call twice or before
// Start.
func (g *Gateway) Stop(ctx context.Context) error {
	var err error
	g.stopOnce.Do(func() {
		g.startOnce.Do(func() { close(g.served) }) // never started: nothing to stop
		if g.srv == nil {
			return
		}
		if err = g.srv.Shutdown(ctx); err != nil {
			err = errors.Join(fmt.Errorf("gateway: grace period over; open streams closed: %w", err), g.srv.Close())
		}
		<-g.served
		g.mu.Lock()
		g.stopping = true
		g.mu.Unlock()
		g.handlers.Wait() // closed connections end them promptly
		g.later.Wait()    // each ends within ResumeGrace
		g.stopKeyWatch()
	})
	return err
}

// enter counts a request in, unless the gateway is stopping: Stop waits
// for the requests counted in before it waits for the cancels they start,
// so no cancel starts while it waits.
func (g *Gateway) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopping {
		return false
	}
	g.handlers.Add(1)
	return true
}

func (g *Gateway) stopKeyWatch() {
	if g.keyWatch != nil {
		g.keyWatch.Stop()
	}
}

// cors answers browsers from the configured origins.
func (g *Gateway) cors(next http.Handler) http.Handler {
	if len(g.cfg.CORSOrigins) == 0 {
		return next
	}
	allowed := map[string]bool{}
	for _, o := range g.cfg.CORSOrigins {
		allowed[o] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Get("Origin"); o != "" && (allowed["*"] || allowed[o]) {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", o)
			h.Set("Vary", "Origin")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID, "+HeaderRequestID)
			h.Set("Access-Control-Expose-Headers", HeaderRequestID+", "+HeaderResumeToken)
			if r.Method == http.MethodOptions {
				h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// authenticate returns the tenant of r's API key; without a valid key it
// answers 401 and returns false.
func (g *Gateway) authenticate(rec *recorder, r *http.Request) (string, bool) {
	tenant, ok := g.tenant(r)
	if !ok {
		errUnauthorized.write(rec)
		return "", false
	}
	rec.tenant = tenant
	return tenant, true
}

// tenant authenticates r: the tenant its bearer key maps to, or the one
// tenant when no keys are configured.
func (g *Gateway) tenant(r *http.Request) (string, bool) {
	if g.keys == nil {
		return g.cfg.Tenant, true
	}
	key, ok := bearer(r)
	if !ok {
		return "", false
	}
	return g.keys.Tenant(key)
}

func bearer(r *http.Request) (string, bool) {
	const prefix = "Bearer "
	h := r.Header.Get("Authorization")
	if len(h) <= len(prefix) || h[:len(prefix)] != prefix {
		return "", false
	}
	return h[len(prefix):], true
}

// cancelLater cancels a request whose client went away, with chatfleet's
// rules: the request leaves its generation, which goes on for anyone else
// who wants it. Bounded: the client is gone, nobody waits for this.
func (g *Gateway) cancelLater(tenant, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.pub.Cancel(ctx, tenant, id); err != nil && !errors.Is(err, publisher.ErrAlreadyFinished) {
		g.cfg.Logger.Warn("cannot cancel the request of a client that went away", "tenant", tenant, "request", id, "err", err)
	}
}

// cancelUnlessResumed cancels a stream's request whose client went away,
// unless the client resumes it, on any replica, within ResumeGrace: the
// resuming gateway says so on GatewayResumed. It returns at once; the
// wait runs on a goroutine Stop waits for.
func (g *Gateway) cancelUnlessResumed(tenant, id string) {
	if g.cfg.ResumeGrace < 0 {
		g.cancelLater(tenant, id)
		return
	}
	resumed := make(chan *nats.Msg, 1)
	sub, err := g.nc.ChanSubscribe(g.cfg.Names.GatewayResumed(tenant, id), resumed)
	if err != nil {
		g.cancelLater(tenant, id)
		return
	}
	g.later.Add(1)
	go func() { // owned by the gateway: Stop waits for it (at most ResumeGrace)
		defer g.later.Done()
		defer func() { _ = sub.Unsubscribe() }()
		t := time.NewTimer(g.cfg.ResumeGrace)
		defer t.Stop()
		select {
		case <-resumed:
		case <-t.C:
			g.cancelLater(tenant, id)
		}
	}()
}
