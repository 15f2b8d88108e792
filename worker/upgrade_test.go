package worker_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/manager"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/subjects"
	"github.com/chatfleet/chatfleet/topology"
)

// legacyWorker is a worker of the layout before priorities: it pulls
// every job from the one shared consumer, in arrival order, as workers did
// then (the old fetch loop, kept for this test), and hands it to a
// manager.
type legacyWorker struct {
	mgr  *manager.Manager
	stop context.CancelFunc
	done sync.WaitGroup
}

func startLegacyWorker(t *testing.T, f *fleettest.Fleet, top *topology.Topology, cons jetstream.Consumer, id string) *legacyWorker {
	t.Helper()
	nc, js := natstest.JetStream(t, f.NATS.ClientURL())
	up, err := llm.New(llm.Config{BaseURL: f.LLM.URL(), APIKey: "test-key"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := manager.Config{WorkerID: id, Names: top.Config.Names, DefaultModel: "test-model", Logger: fleettest.Logger(),
		MaxConcurrentRequests: 4}.WithDefaults()
	mgr, err := manager.New(cfg, nc, js, top, up)
	if err != nil {
		t.Fatal(err)
	}
	if err := mgr.Start(fleettest.Context(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	w := &legacyWorker{mgr: mgr, stop: stop}
	w.done.Add(1)
	go func() { // owned by the legacy worker: halt cancels and waits for it
		defer w.done.Done()
		for {
			permits, err := mgr.Slots().Reserve(ctx, cfg.MaxConcurrentRequests)
			if err != nil {
				return
			}
			batch, err := cons.Fetch(len(permits), jetstream.FetchMaxWait(100*time.Millisecond))
			got := 0
			if err == nil {
				for msg := range batch.Messages() {
					p := permits[got]
					got++
					w.done.Add(1)
					go func() { defer w.done.Done(); mgr.Handle(msg, p) }() // owned by the legacy worker: halt waits
				}
			}
			for _, p := range permits[got:] {
				p.Release()
			}
			if err != nil || batch.Error() != nil {
				select { // its consumer is gone after the migration: it only waits
				case <-ctx.Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}
	}()
	t.Cleanup(w.halt)
	return w
}

// halt stops pulling, lets the running jobs finish and stops the manager.
func (w *legacyWorker) halt() {
	w.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_ = w.mgr.Slots().WaitIdle(ctx)
	w.done.Wait()
	_ = w.mgr.Stop(ctx)
}

// TestMigrationUnderLoad: a fleet of the layout before priorities (two
// workers on the shared consumer: the old fetch loop, kept for this test)
// serves a stream of jobs, normal and high; the layout is migrated
// mid-stream, new workers start, the old ones stop. Every job completes
// with exactly one terminal event, none is lost or answered twice. A new
// worker refuses the unmigrated stream.
func TestMigrationUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("migration under load: skipped with -short")
	}
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithDelay(0, 2*time.Millisecond)}})
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	ctx := fleettest.Context(t, 2*time.Minute)
	top, err := topology.Ensure(ctx, js, f.Topology)
	if err != nil {
		t.Fatal(err)
	}
	// The older layout: its stream and shared consumer.
	if _, err := js.UpdateStream(ctx, topology.LegacyJobsStream(f.Topology)); err != nil {
		t.Fatal(err)
	}
	legacy, err := js.CreateConsumer(ctx, top.Config.Names.JobsStream(), topology.LegacyWorkersConsumer(f.Topology))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := topology.Ensure(ctx, js, f.Topology); !errors.Is(err, topology.ErrOldLayout) {
		t.Fatalf("new process on the older layout: err = %v, want ErrOldLayout", err)
	}
	old1, old2 := startLegacyWorker(t, f, top, legacy, "old1"), startLegacyWorker(t, f, top, legacy, "old2")
	migrateUnderLoad(t, f, func() { old1.halt(); old2.halt() })
}

// TestMigrationUnderLoadOldBinaries: TestMigrationUnderLoad with two
// worker processes of the version before priorities (built from this
// repository's history), stopped with SIGTERM after the migration.
func TestMigrationUnderLoadOldBinaries(t *testing.T) {
	bin := buildOldWorker(t)
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithDelay(0, 2*time.Millisecond)}})
	old1, old2 := startOldWorker(t, f, bin, "old1"), startOldWorker(t, f, bin, "old2")
	migrateUnderLoad(t, f, func() {
		for _, p := range []*exec.Cmd{old1, old2} {
			_ = p.Process.Signal(syscall.SIGTERM)
			_ = p.Wait() // graceful: its running jobs end first
		}
	})
}

// migrateUnderLoad submits a stream of jobs to a fleet of the older layout
// (its workers already running), migrates it once the upstream has
// answered 40, starts two new workers and stops the old ones
// (stopOld), then checks every job ended exactly once and left the queue,
// and that a second migration has nothing to do.
func migrateUnderLoad(t *testing.T, f *fleettest.Fleet, stopOld func()) {
	t.Helper()
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	ctx := fleettest.Context(t, 2*time.Minute)
	const total = 240
	var (
		mu      sync.Mutex
		replies []*publisher.Reply
		jobs    []protocol.Job
	)
	submitted := make(chan struct{})
	// A test that failed early still waits: t.Errorf after it returned panics.
	defer func() { <-submitted }()
	go func() { // owned by the test: it waits on submitted
		defer close(submitted)
		for i := range total {
			j := userJob(fmt.Sprintf("job %d", i))
			j.Tenant = []string{"a", "b"}[i%2]
			if i%3 == 0 {
				j.Priority = protocol.PriorityHigh
			}
			j.ID = protocol.NewID()
			r, err := f.Pub.Submit(ctx, j)
			if err != nil {
				t.Errorf("submit %d: %v", i, err)
				return
			}
			mu.Lock()
			replies, jobs = append(replies, r), append(jobs, j)
			mu.Unlock()
		}
	}()
	if err := f.LLM.WaitCalls(ctx, 40); err != nil { // the old fleet is busy
		t.Fatal(err)
	}
	mig, err := topology.PlanMigration(ctx, js, f.Topology)
	if err != nil || len(mig.Steps) != 2 {
		t.Fatalf("plan: %v, %v; want two steps", mig, err)
	}
	if err := mig.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	f.StartWorker(withModel)
	f.StartWorker(withModel)
	stopOld()
	<-submitted

	mu.Lock()
	defer mu.Unlock()
	if len(replies) != total {
		t.Fatalf("%d jobs submitted, want %d", len(replies), total)
	}
	for i, r := range replies {
		if _, err := r.Collect(ctx); err != nil {
			t.Errorf("job %d (%s): %v", i, r.ID(), err)
		}
	}
	names := f.Topology.WithDefaults().Names
	replyStream, err := js.Stream(ctx, names.RepliesStream())
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if n := terminalsOf(t, ctx, replyStream, names, j); n != 1 {
			t.Errorf("request %s/%s has %d terminal events, want exactly 1", j.Tenant, j.ID, n)
		}
	}
	jobsStream, err := js.Stream(ctx, names.JobsStream())
	if err != nil {
		t.Fatal(err)
	}
	fleettest.Poll(t, ctx, "every job acked and gone from the queue", func() bool {
		info, err := jobsStream.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	if again, err := topology.PlanMigration(ctx, js, f.Topology); err != nil || len(again.Steps) != 0 {
		t.Errorf("a second migration: %+v, %v; want nothing to do", again, err)
	}
}

// terminalsOf counts the terminal events stored for job's reply.
func terminalsOf(t *testing.T, ctx context.Context, s jetstream.Stream, names subjects.Names, j protocol.Job) int {
	t.Helper()
	n := 0
	for seq := uint64(1); ; {
		msg, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(names.ReplyWrite(j.Tenant, j.ID)))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		seq = msg.Sequence + 1
		if ev, err := protocol.DecodeEvent(msg.Data); err == nil && ev.Type.Terminal() {
			n++
		}
	}
}
