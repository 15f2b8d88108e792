package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/chatfleet/chatfleet/internal/gopool"
	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/manager"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/topology"
)

// newUpstreamClient makes the client of upstream name. A 429 it meets
// slows the whole fleet: it tells the manager *mgr, which exists before
// the client's first call.
func newUpstreamClient(cfg llm.Config, name string, mgr **manager.Manager) (*llm.Client, error) {
	if cfg.OnRateLimited == nil {
		cfg.OnRateLimited = func(d time.Duration) time.Duration { return (*mgr).RateLimited(name, d) }
	}
	return llm.New(cfg)
}

// Worker pulls jobs and answers them. Create it with New, then Start and
// Stop it.
type Worker struct {
	cfg Config
	nc  *nats.Conn

	mgr      *manager.Manager
	js       jetstream.JetStream
	queues   *queues // the fetch loop's; listens to the stream's announcements
	http     *http.Server
	httpAddr net.Addr
	service  micro.Service
	started  time.Time
	draining atomic.Bool // set when Stop begins: /readyz fails from then on

	stopFetch context.CancelFunc
	fetching  chan struct{} // closed when the fetch loop returns
	handlers  *gopool.Pool  // goroutines the jobs run on; Close waits for running jobs

	startOnce, stopOnce sync.Once
	running             atomic.Bool
	stopped             chan struct{}
}

// New returns a worker that will use nc. It does no I/O.
func New(cfg Config, nc *nats.Conn) (*Worker, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if nc == nil {
		return nil, errors.New("worker: a NATS connection is required")
	}
	return &Worker{cfg: cfg, nc: nc, stopped: make(chan struct{})}, nil
}

// ID returns the worker's ID.
func (w *Worker) ID() string { return w.cfg.ID }

// Manager returns the worker's manager, once started.
func (w *Worker) Manager() *manager.Manager { return w.mgr }

// HTTPAddr returns the address /healthz listens on, once started (nil when
// disabled).
func (w *Worker) HTTPAddr() net.Addr { return w.httpAddr }

// Start creates or checks the topology, starts the manager and the health
// server, and starts pulling jobs in the background.
func (w *Worker) Start(ctx context.Context) error {
	err := errors.New("worker: already started")
	w.startOnce.Do(func() { err = w.start(ctx) })
	return err
}

func (w *Worker) start(ctx context.Context) error {
	w.started = time.Now()
	// A stored batch of a live reply (manager/live.go) whose ack never
	// comes (no disconnect to fail it) is stored again the slow way after
	// this long, instead of holding the reply's next batches back.
	js, err := jetstream.New(w.nc, jetstream.WithPublishAsyncTimeout(asyncPublishTimeout))
	if err != nil {
		return err
	}
	top, err := topology.Ensure(ctx, js, w.cfg.Topology)
	if err != nil {
		return err
	}
	var mgr *manager.Manager
	up, err := newUpstreamClient(w.cfg.LLM, protocol.DefaultUpstream, &mgr)
	if err != nil {
		return err
	}
	mcfg := w.cfg.Manager
	for _, u := range w.cfg.Upstreams {
		c, err := newUpstreamClient(u.LLM, u.Name, &mgr)
		if err != nil {
			return fmt.Errorf("worker: upstream %s: %w", u.Name, err)
		}
		mcfg.Upstreams = append(mcfg.Upstreams, manager.Upstream{Name: u.Name, Client: c, Models: u.Models, Weight: u.Weight, Limits: u.Limits})
	}
	mgr, err = manager.New(mcfg, w.nc, js, top, up)
	if err != nil {
		return err
	}
	w.mgr = mgr
	if err := w.mgr.Start(ctx); err != nil {
		return err
	}
	w.queues = newQueues(top, w.cfg.FetchWait)
	if err := w.queues.listen(w.nc); err != nil {
		_ = w.mgr.Stop(ctx)
		return err
	}
	w.js = js
	if err := w.serveHTTP(); err != nil {
		w.queues.stop()
		_ = w.mgr.Stop(ctx)
		return err
	}
	if err := w.registerService(); err != nil {
		w.queues.stop()
		_ = w.mgr.Stop(ctx)
		w.stopHTTP(ctx)
		return err
	}
	if w.cfg.Manager.LogPrompts {
		w.cfg.Logger.Warn("CHATFLEET_LOG_PROMPTS is on: every job's prompt is written to the logs. Turn it off outside debugging.")
	}
	fetchCtx, stop := context.WithCancel(context.Background())
	w.stopFetch = stop
	w.fetching = make(chan struct{})
	w.handlers = gopool.New(idleRoutine)
	go w.fetchLoop(fetchCtx) // owned by the worker: Stop cancels and waits for it
	w.running.Store(true)
	w.cfg.Logger.Info("worker started", "worker", w.cfg.ID, "prefix", w.cfg.Prefix,
		"max_requests", w.cfg.Manager.MaxConcurrentRequests, "max_llm_streams", w.cfg.Manager.MaxConcurrentLLMStreams,
		"max_followers", w.cfg.Manager.MaxConcurrentFollowers)
	return nil
}

// ErrGraceExpired is wrapped by Stop's error when running jobs outlasted
// the grace period (Stop's context) and were handed back to the queue:
// nothing is lost, another worker resumes them, but they did not finish
// here.
var ErrGraceExpired = errors.New("worker: grace period over; unfinished jobs handed back")

// Stop stops pulling jobs and lets the running ones finish until ctx ends
// (the grace period). Then it stops hard: whatever still runs is handed
// back to the queue, leaders release their leases, and Stop waits up to
// Config.HardStopTimeout for that. Its error wraps ErrGraceExpired when
// the grace period ran out with jobs still running, and says so when even
// the hard stop did not finish in time. Safe to call twice or before
// Start.
func (w *Worker) Stop(ctx context.Context) error {
	var err error
	w.stopOnce.Do(func() {
		defer close(w.stopped)
		if !w.running.Load() {
			return
		}
		w.draining.Store(true)
		w.stopFetch()
		<-w.fetching
		w.queues.stop()
		w.mgr.Drain()
		var errs []error
		if werr := w.mgr.Slots().WaitIdle(ctx); werr != nil {
			active := w.mgr.Stats().Active
			w.cfg.Logger.Warn("grace period over; handing unfinished jobs back", "active", active)
			errs = append(errs, fmt.Errorf("%w (%d)", ErrGraceExpired, active))
		}
		hardCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.HardStopTimeout)
		defer cancel()
		if merr := w.mgr.Stop(hardCtx); merr != nil {
			errs = append(errs, merr)
		}
		// The fetch loop has returned: no job starts after this.
		if herr := w.handlers.Close(hardCtx); herr != nil {
			errs = append(errs, fmt.Errorf("worker: jobs still settling after the hard stop: %w", herr))
		}
		_ = w.service.Stop()
		w.stopHTTP(hardCtx)
		err = errors.Join(errs...)
		w.cfg.Logger.Info("worker stopped", "worker", w.cfg.ID)
	})
	return err
}

// Stopped is closed once Stop has finished.
func (w *Worker) Stopped() <-chan struct{} { return w.stopped }

// idleRoutine is how long a job goroutine waits for the next job before
// it ends.
const idleRoutine = 10 * time.Second

// asyncPublishTimeout bounds the wait for a stored batch's ack.
const asyncPublishTimeout = 5 * time.Second
