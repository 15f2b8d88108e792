package manager_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/manager"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/topology"
	"github.com/chatfleet/chatfleet/worker"
)

// TestForgedMaxDeliveriesAdvisory: any client can publish a max-deliveries
// advisory naming any job. One naming a job a worker runs (its first
// delivery) or a queued job ends neither: the worker that hears it, and a
// worker that does not run the job and must ask the server, both refuse;
// both jobs finish normally and nothing is dead-lettered.
func TestForgedMaxDeliveriesAdvisory(t *testing.T) {
	t.Parallel()
	stalls := map[string]chan struct{}{"running": make(chan struct{}), "own": make(chan struct{}), "queued": make(chan struct{})}
	f := fleettest.New(t, fleettest.Options{LLM: stallsByPrompt(stalls)})
	top := jobs(t, f)
	ctx := ctxFor(t, time.Minute)
	w := f.StartWorker(capacity(1))
	running := submit(t, ctx, f.Pub, userJob("running"))
	<-running.metaRead
	runningSeq := lastJobSeq(t, top)
	// A second worker, busy with a job of its own: it runs neither job.
	w2 := f.StartWorker(capacity(1))
	own := submit(t, ctx, f.Pub, userJob("own"))
	<-own.metaRead
	if own.res.meta.Worker != w2.ID() {
		t.Fatalf("w2's own job ran on %s", own.res.meta.Worker)
	}
	queued := submit(t, ctx, f.Pub, userJob("queued")) // every slot is held
	queuedSeq := lastJobSeq(t, top)

	checked := make(chan bool, 4)
	for _, x := range []*manager.Manager{w.Manager(), w2.Manager()} {
		x.SetMaintenanceHooks(manager.MaintenanceHooks{Advisory: func(_ uint64, acted bool) { checked <- acted }})
	}
	stranger := natstest.Connect(t, f.NATS.ClientURL())
	names := top.Config.Names
	for _, seq := range []uint64{runningSeq, queuedSeq} {
		queue := names.QueueConsumer("default", "normal")
		forged := fmt.Sprintf(`{"type":"io.nats.jetstream.advisory.v1.max_deliver","stream":%q,"consumer":%q,"stream_seq":%d,"deliveries":5}`,
			names.JobsStream(), queue, seq)
		subject := "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + names.JobsStream() + "." + queue
		if err := stranger.Publish(subject, []byte(forged)); err != nil {
			t.Fatal(err)
		}
		select {
		case acted := <-checked:
			if acted {
				t.Errorf("a forged advisory for job %d was acted on", seq)
			}
		case <-ctx.Done():
			t.Fatal("no worker checked the advisory")
		}
		// The same advisory at the worker that does not run the job: only
		// the server's state can tell.
		if w2.Manager().CheckMaxDeliveries(ctx, seq) {
			t.Errorf("w2 gave up job %d on a forged advisory", seq)
		}
	}

	for _, ch := range stalls {
		close(ch)
	}
	for name, s := range map[string]*submitted{"running": running, "queued": queued, "own": own} {
		if r := s.wait(t); r.err != nil || r.answer == nil {
			t.Errorf("%s job: %s", name, describe(r))
		}
	}
	if dl := deadLetters(t, f); len(dl) != 0 || statsOf(w, w2).Errors != 0 {
		t.Errorf("dead letters %d, errors %d; want none", len(dl), statsOf(w, w2).Errors)
	}
}

// TestMaxDeliveriesWithoutAdvisory: a job that exhausted its deliveries
// while no worker was listening for the advisory is still given up: the
// maintainer finds it in the server's state.
func TestMaxDeliveriesWithoutAdvisory(t *testing.T) {
	t.Parallel()
	cfg := topology.Config{MaxDeliver: 2, AckWait: time.Second}
	f := fleettest.New(t, fleettest.Options{Topology: cfg})
	top := jobs(t, f)
	ctx := ctxFor(t, 30*time.Second)
	observer := natstest.Connect(t, f.NATS.ClientURL())
	advisories := make(chan *nats.Msg, 1)
	sub, err := observer.ChanSubscribe("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>", advisories)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	r, err := f.Pub.Submit(ctx, userJob("I crash workers"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	// Two deliveries, never acked; the pulls after them find the job's
	// deliveries exhausted once its ack wait is over: the server gives it
	// up and says so, with no worker there to hear it.
	queue, err := top.Queue(ctx, "default", "normal")
	if err != nil {
		t.Fatal(err)
	}
	for deliveries := 0; ; {
		batch, err := queue.Fetch(1, jetstream.FetchMaxWait(250*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		for range batch.Messages() {
			if deliveries++; deliveries > 2 {
				t.Fatal("the job was delivered a third time")
			}
		}
		select {
		case <-advisories:
		case <-ctx.Done():
			t.Fatal("the server never gave the job up")
		default:
			continue
		}
		break
	}
	w := f.StartWorker(func(c *worker.Config) { c.Manager.MaintenanceInterval = 50 * time.Millisecond })
	_, err = r.Collect(ctx)
	if errorCode(err) != protocol.CodeInternal || !strings.Contains(err.Error(), "2 deliveries") {
		t.Fatalf("err = %v, want internal after 2 deliveries", err)
	}
	if dl := deadLetters(t, f); len(dl) != 1 || dl[0].Header.Get(protocol.DeadLetterDeliveries) != "2" {
		t.Errorf("dead letters = %+v", dl)
	}
	eventually(t, ctx, "the job leaves the queue", func() bool {
		info, err := top.Jobs.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	if st := w.Manager().Stats(); st.DeadLettered != 1 {
		t.Errorf("dead letters counted %d, want 1", st.DeadLettered)
	}
}
