package worker_test

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/worker"
)

// standingWorkerOn starts a worker on nc that never rescans, has it run a
// job, and waits for its standing pull on that job's queue.
func standingWorkerOn(t *testing.T, f *fleettest.Fleet, nc *nats.Conn) *worker.Worker {
	t.Helper()
	cfg := f.WorkerConfig()
	neverRescans(&cfg)
	w, err := worker.New(cfg, nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(fleettest.Context(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fleettest.StopWorker(t, w) })
	submitAndCollect(t, f, userJob("first"))
	waitStanding(t, f)
	return w
}

// gatedDialer dials normally until closed, then holds every dial until
// opened: a test decides when a dropped connection comes back.
type gatedDialer struct {
	mu   sync.Mutex
	gate chan struct{} // nil: dial at once
}

func (d *gatedDialer) Dial(network, address string) (net.Conn, error) {
	d.mu.Lock()
	gate := d.gate
	d.mu.Unlock()
	if gate != nil {
		<-gate
	}
	return net.Dial(network, address)
}

func (d *gatedDialer) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gate = make(chan struct{})
}

func (d *gatedDialer) open() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gate != nil {
		close(d.gate)
		d.gate = nil
	}
}

// TestStandingPullGoneSilentIsStopped: a standing pull whose queue's
// consumer vanished while its worker was disconnected gets no job and no
// 408 after the reconnect: nobody serves that consumer. It ends (on the
// server's "no responders", or by nats.go's own timer a second after its
// expiry) and leaves nothing behind: its subscription goes, as do its goroutines (goleak
// sees them at the end), and the queue works again. (It used to wait for
// a missed heartbeat, 30 s, and was skipped under -short; a standing pull
// is now one Fetch of 250 ms.)
func TestStandingPullGoneSilentIsStopped(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	dialer := &gatedDialer{}
	t.Cleanup(dialer.open)
	nc := natstest.Connect(t, f.NATS.ClientURL(), nats.SetCustomDialer(dialer))
	standingWorkerOn(t, f, nc)
	withStanding := nc.NumSubscriptions()

	// Drop the worker's connection, delete the queue's consumer while it
	// is away, and let it back.
	id, err := nc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	dialer.close()
	if err := f.NATS.NATS().DisconnectClientByID(id); err != nil {
		t.Fatal(err)
	}
	ctx := fleettest.Context(t, 60*time.Second)
	fleettest.Poll(t, ctx, "the worker to notice the drop", func() bool { return !nc.IsConnected() })
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	s, err := js.Stream(ctx, f.Topology.WithDefaults().Names.JobsStream())
	if err != nil {
		t.Fatal(err)
	}
	names := s.ConsumerNames(ctx)
	var deleted int
	for name := range names.Name() {
		if err := s.DeleteConsumer(ctx, name); err != nil {
			t.Fatal(err)
		}
		deleted++
	}
	if deleted == 0 {
		t.Fatal("no queue consumer to delete")
	}
	dialer.open()
	fleettest.Poll(t, ctx, "the worker to reconnect", nc.IsConnected)

	// Once nats.go gives up on the silent pull, the worker stops it.
	fleettest.Poll(t, ctx, "the silent standing pull's subscription to go", func() bool { return nc.NumSubscriptions() < withStanding })
	// And the queue works again: its consumer is created anew.
	submitAndCollect(t, f, userJob("after the consumer came back"))
}
