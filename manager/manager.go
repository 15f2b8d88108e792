package manager

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/chatfleet/chatfleet/internal/gopool"
	"github.com/chatfleet/chatfleet/internal/kvmirror"
	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/tools"
	"github.com/chatfleet/chatfleet/topology"
)

// Causes a request or hub context is cancelled with.
var (
	errCancelled  = errors.New("cancelled by request")
	errTimeout    = errors.New("processing timeout")
	errShutdown   = errors.New("worker shutting down")
	errNoInterest = errors.New("no request is interested any more")
	errLeaseLost  = errors.New("leader lease lost")
)

// Manager runs the requests of one worker. Create it with New, Start it,
// hand it pulled jobs with Handle, and Stop it.
type Manager struct {
	cfg      Config
	nc       *nats.Conn
	js       jetstream.JetStream
	topo     *topology.Topology
	routes   *routeTable   // the upstreams, default first (routes.go)
	tools    *tools.Client // the fleet's tool and preparation services
	slots    *Slots
	tracer   trace.Tracer
	metrics  *metrics
	requests *registry
	cancels  *cancelSet
	stats    counters
	tenants  *tenantView // the tenants bucket: limits and state (tenants.go)
	shares   *shareTable // fleet-wide shares of tenants' in-flight limits (shares.go)
	usage    *usage      // counters by tenant (usage.go)
	// upstreams is the upstreams bucket: fleet-wide limits, windows and
	// backoff (upstreams.go, fleetcap.go).
	upstreams *upstreamView
	held      heldBack // generations held at fleet-wide limits now, for metrics (fleetmetrics.go)

	// life is cancelled (with errShutdown) by Stop: every request and
	// hub derives from it.
	life    context.Context
	endLife context.CancelCauseFunc
	// hard bounds what must finish even after life ends (storing an
	// event, a lease release): Stop cancels it once every request and hub
	// has ended, or as soon as its own context ends, so no retry outlives
	// Stop's wait.
	hard      context.Context
	endHard   context.CancelFunc
	callbacks runGuard // NATS callbacks running now
	handling  runGuard // jobs being handled now (Handle)

	// serveHook, set by a test (export_test.go), runs before each job is
	// served: to make one panic, say. Never set outside tests.
	serveHook  atomic.Pointer[func(*protocol.Job)]
	background sync.WaitGroup // hubs, the janitor
	routines   *gopool.Pool   // goroutines for hubs and upstream readers; closed after background

	hubs *hubTable

	ctlSub       *nats.Subscription
	advSub       *nats.Subscription
	cancelMirror *kvmirror.Mirror // the cancel bucket, once started
	tenantMirror *kvmirror.Mirror // the tenants bucket, once started
	stopped      chan struct{}
	stop         sync.Once
	// upstreamMirror is the upstreams bucket's, once started; loadMirror
	// follows the upstreams' stream shares, with more than one upstream.
	upstreamMirror, loadMirror *kvmirror.Mirror

	draining  chan struct{} // closed by Drain: the worker pulls no more (pause.go)
	drainOnce sync.Once

	maint    *maintainer // fleet maintenance, while this worker is elected
	givingUp sync.Mutex  // one give-up of an exhausted job at a time (maxdeliver.go)
}

// New returns a manager. nc must be the connection js and top were made
// from; up is the upstream every leader streams from.
func New(cfg Config, nc *nats.Conn, js jetstream.JetStream, topo *topology.Topology, up *llm.Client) (*Manager, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if nc == nil || js == nil || topo == nil || up == nil {
		return nil, fmt.Errorf("%w: connection, JetStream, topology and upstream are required", ErrInvalidConfig)
	}
	life, end := context.WithCancelCause(context.Background())
	hard, endHard := context.WithCancel(context.Background())
	m := &Manager{
		cfg:      cfg,
		nc:       nc,
		js:       js,
		topo:     topo,
		tools:    tools.NewClient(nc, cfg.Names),
		slots:    newSlots(cfg),
		requests: newRegistry(),
		cancels:  newCancelSet(),
		life:     life,
		endLife:  end,
		hard:     hard,
		endHard:  endHard,
		routines: gopool.New(idleRoutine),
		stopped:  make(chan struct{}),
		draining: make(chan struct{}),
		tracer:   cfg.TracerProvider.Tracer("github.com/chatfleet/chatfleet/manager"),
	}
	var err error
	if m.metrics, err = newMetrics(cfg.MeterProvider, m); err == nil {
		m.usage, err = newUsage(cfg.MeterProvider)
	}
	if err == nil {
		err = registerFleetMetrics(cfg.MeterProvider, m)
	}
	if err != nil {
		end(nil)
		endHard()
		return nil, fmt.Errorf("manager: metrics: %w", err)
	}
	m.tenants = newTenantView(m)
	m.upstreams = newUpstreamView(m)
	m.routes = newRouteTable(m, up)
	m.shares = &shareTable{m: m}
	m.hubs = newHubTable(m)
	m.maint = newMaintainer(m)
	return m, nil
}

// Start watches cancel requests and the tenants bucket, answers control
// requests, and campaigns to maintain the fleet. It returns once every
// cancel and every tenant's limits recorded so far are known, so a job
// cancelled while queued, or of a paused tenant, is recognised from the
// first pull.
func (m *Manager) Start(ctx context.Context) error {
	if err := m.watchCancels(ctx); err != nil {
		return err
	}
	sub, err := m.nc.Subscribe(m.cfg.Names.Control(m.cfg.WorkerID), m.callbacks.guard(m.handleControl))
	if err != nil {
		m.cancelMirror.Stop()
		return fmt.Errorf("manager: subscribe to control subject: %w", err)
	}
	m.ctlSub = sub
	// One worker of the fleet handles each advisory.
	adv, err := m.nc.QueueSubscribe(m.maxDeliveriesSubject(), m.cfg.Names.WorkersConsumer(), m.callbacks.guard(m.handleMaxDeliveries))
	if err != nil {
		m.cancelMirror.Stop()
		_ = sub.Unsubscribe()
		return fmt.Errorf("manager: subscribe to max-deliveries advisories: %w", err)
	}
	m.advSub = adv
	// Before the first pull, so every pause and limit is known.
	if err := m.watchTenants(ctx); err != nil {
		m.cancelMirror.Stop()
		_ = sub.Unsubscribe()
		_ = adv.Unsubscribe()
		return err
	}
	if err = m.watchUpstreams(ctx); err == nil {
		err = m.watchLoad(ctx)
	}
	if err != nil {
		for _, mirror := range []*kvmirror.Mirror{m.cancelMirror, m.tenantMirror, m.upstreamMirror} {
			if mirror != nil {
				mirror.Stop()
			}
		}
		_ = sub.Unsubscribe()
		_ = adv.Unsubscribe()
		return err
	}
	m.background.Add(1)
	go func() { // owned by the manager: it ends with m.life
		defer m.background.Done()
		m.janitor()
	}()
	return m.maint.Start(ctx)
}

// ackWait is the jobs consumer's ack wait: running jobs report progress
// every third of it. The topology holds it, so it has one source.
func (m *Manager) ackWait() time.Duration { return m.topo.Config.AckWait }

// leaseTTL is the in-flight bucket's TTL: leaders renew every third of it
// and followers check the lease as often.
func (m *Manager) leaseTTL() time.Duration { return m.topo.Config.LeaseTTL }

// Slots returns the worker's pools; the fetch loop takes request slots.
func (m *Manager) Slots() *Slots { return m.slots }

// WorkerID returns the worker's ID.
func (m *Manager) WorkerID() string { return m.cfg.WorkerID }

// Stop ends every request and hub at once: running jobs are handed
// back (Nak) for another worker, leaders give up their leases so followers
// elsewhere take over. It waits for the manager's goroutines until ctx
// ends; then whatever still runs gives up its retries at once, and Stop
// returns an error (Stopped is closed when they have ended). Safe to call
// twice.
func (m *Manager) Stop(ctx context.Context) error {
	m.stop.Do(func() {
		// First, so another worker maintains the fleet at once.
		_ = m.maint.Stop(ctx)
		m.hubs.stop()
		m.endLife(errShutdown)
		for _, sub := range []*nats.Subscription{m.ctlSub, m.advSub} {
			if sub != nil {
				_ = sub.Unsubscribe()
			}
		}
		m.callbacks.close()
		m.handling.close()
		// At once: with NATS unreachable each watch's stop may wait for
		// its request to time out, and one after the other they outlast
		// the hard stop.
		var mirrors sync.WaitGroup
		for _, mirror := range []*kvmirror.Mirror{m.cancelMirror, m.tenantMirror, m.upstreamMirror, m.loadMirror} {
			if mirror != nil { // nil when never started
				mirrors.Go(mirror.Stop)
			}
		}
		mirrors.Wait()
		go func() { // owned by Stop: it ends when the manager's goroutines have
			m.background.Wait()
			m.callbacks.wait()
			m.handling.wait() // their last stores run on hard: cancelled only after them
			<-m.maint.Stopped()
			_ = m.routines.Close(context.Background()) // every task ended with background
			m.endHard()
			close(m.stopped)
		}()
	})
	select {
	case <-m.stopped:
		return nil
	case <-ctx.Done():
		m.endHard()
		return fmt.Errorf("manager: stop: %w; the last requests are giving up", ctx.Err())
	}
}

// pause waits d, or less when the manager's hard stop comes first; false
// then.
func (m *Manager) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-m.hard.Done():
		return false
	}
}

// Stopped is closed once Stop has finished.
func (m *Manager) Stopped() <-chan struct{} { return m.stopped }

// idleRoutine is how long a pooled goroutine waits for the next task
// before it ends: long enough to span the gaps of a steady load.
const idleRoutine = 10 * time.Second
