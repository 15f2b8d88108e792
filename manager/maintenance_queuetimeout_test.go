package manager_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/manager"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/topology"
	"github.com/chatfleet/chatfleet/worker"
)

// busyMaintainer gives a worker one request slot and a maintainer that
// scans every 50ms.
func busyMaintainer(c *worker.Config) {
	c.Manager.MaxConcurrentRequests = 1
	c.Manager.MaintenanceInterval = 50 * time.Millisecond
}

// stallsByPrompt returns upstream options under which a call whose last
// message is one of stalls' keys stalls before its first token until that
// channel is closed; other calls answer at once.
func stallsByPrompt(stalls map[string]chan struct{}) []llmtest.Option {
	return []llmtest.Option{llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		rep := llmtest.DefaultReply(r)
		if ch, ok := stalls[r.LastUserMessage()]; ok {
			rep.StallAfter, rep.Release = -1, ch
		}
		return rep
	})}
}

// jobs creates the fleet's streams and buckets, as `chatfleet init` does,
// and gives a test them.
func jobs(t *testing.T, f *fleettest.Fleet) *topology.Topology {
	t.Helper()
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	top, err := topology.Ensure(ctxFor(t, 10*time.Second), js, f.Topology)
	if err != nil {
		t.Fatal(err)
	}
	return top
}

// lastJobSeq is the stream sequence of the job submitted last.
func lastJobSeq(t *testing.T, top *topology.Topology) uint64 {
	t.Helper()
	m, err := top.Jobs.GetLastMsgForSubject(ctxFor(t, 10*time.Second), ">") // every queue
	if err != nil {
		t.Fatal(err)
	}
	return m.Sequence
}

// replyEvents returns every event stored for request id of the default
// tenant.
func replyEvents(t *testing.T, top *topology.Topology, id string) []protocol.Event {
	t.Helper()
	ctx := ctxFor(t, 10*time.Second)
	subject := top.Config.Names.ReplyWrite(protocol.DefaultTenant, id)
	var out []protocol.Event
	for seq := uint64(1); ; {
		m, err := top.Replies.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		evs, _, err := protocol.DecodeStored(m.Data) // a live reply stores batches
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, evs...)
		seq = m.Sequence + 1
	}
}

func terminals(evs []protocol.Event) (n int) {
	for _, ev := range evs {
		if ev.Type.Terminal() {
			n++
		}
	}
	return n
}

// eventually polls cond until it holds, failing the test at ctx's end: the
// fallback where the server offers no signal to wait for.
func eventually(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, ctx.Err())
		case <-tick.C:
		}
	}
}

func queueEnding(r result) bool {
	return r.err == nil && r.meta.Type == protocol.EventError && r.meta.Error != nil &&
		r.meta.Error.Code == protocol.CodeQueueTimeout && r.meta.Seq == 1
}

// TestQueueTimeoutWhileQueued: with every slot of every worker held by a
// stalled upstream, a job queued past the fleet's queue timeout ends with
// queue_timeout while the slots are still held, it is gone from the
// stream, and no worker runs it once the slots free up.
func TestQueueTimeoutWhileQueued(t *testing.T) {
	t.Parallel()
	stall, release := fleettest.Stalled()
	defer release()
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{stall}, Topology: topology.Config{QueueTimeout: time.Second}})
	w1, w2 := f.StartWorker(busyMaintainer), f.StartWorker(busyMaintainer)
	top := jobs(t, f)
	ctx := ctxFor(t, time.Minute)
	held := []*submitted{submit(t, ctx, f.Pub, userJob("hold one slot")), submit(t, ctx, f.Pub, userJob("hold the other"))}
	if err := f.LLM.WaitCalls(ctx, 2); err != nil { // each leads its own generation, one per worker
		t.Fatal(err)
	}
	// A high-priority job: its queue has no consumer yet (no worker was
	// free to pull from it), and it is still found queued.
	urgent := userJob("nobody is free")
	urgent.Priority = protocol.PriorityHigh
	queued := submit(t, ctx, f.Pub, urgent)
	seq := lastJobSeq(t, top)

	r := queued.wait(t)
	if !queueEnding(r) {
		t.Fatalf("queued job: %s", describe(r))
	}
	for _, h := range held {
		select {
		case <-h.done:
			t.Fatal("a slot was freed before the queued job ended")
		default:
		}
	}
	eventually(t, ctx, "the ended job leaves the stream", func() bool {
		_, err := top.Jobs.GetMsg(ctx, seq)
		return errors.Is(err, jetstream.ErrMsgNotFound)
	})

	release()
	for _, h := range held {
		if r := h.wait(t); r.err != nil {
			t.Errorf("held job: %s", describe(r))
		}
	}
	eventually(t, ctx, "the queue empties", func() bool {
		info, err := top.Jobs.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	if evs := replyEvents(t, top, queued.reply.ID()); len(evs) != 1 {
		t.Errorf("the queued job's reply holds %d events, want its one error: %+v", len(evs), evs)
	}
	st := statsOf(w1, w2)
	if f.LLM.Calls() != 2 || st.Requests != 2 {
		t.Errorf("upstream calls %d, requests handled %d; want 2 and 2 (the queued job never ran)", f.LLM.Calls(), st.Requests)
	}
	if n := w1.Manager().Stats().QueueTimeouts + w2.Manager().Stats().QueueTimeouts; n != 1 {
		t.Errorf("queue timeouts counted %d, want 1", n)
	}
}

// TestQueueTimeoutPerJob: a job's queue_timeout_ms shortens the fleet's
// queue timeout; the maintainer ends it while the only slot is held.
func TestQueueTimeoutPerJob(t *testing.T) {
	t.Parallel()
	stall, release := fleettest.Stalled()
	defer release()
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{stall}, Topology: topology.Config{QueueTimeout: time.Hour}})
	f.StartWorker(busyMaintainer)
	ctx := ctxFor(t, time.Minute)
	held := submit(t, ctx, f.Pub, userJob("hold the slot"))
	<-held.metaRead
	job := userJob("in a hurry")
	job.QueueTimeoutMS = 200
	if r := submit(t, ctx, f.Pub, job).wait(t); !queueEnding(r) {
		t.Fatalf("job with queue_timeout_ms: %s", describe(r))
	}
}

// raceSetup starts one worker with one slot, held by a job stalled on
// first, and queues a job stalled on second behind it. The maintainer's
// clock runs an hour ahead once late is set, so the queued job is overdue
// to the maintainer only, never to the worker's own check when it pulls
// it.
func raceSetup(t *testing.T, ctx context.Context) (f *fleettest.Fleet, w *worker.Worker, top *topology.Topology,
	queued *submitted, seq uint64, stalls map[string]chan struct{}, late *atomic.Bool) {
	t.Helper()
	stalls = map[string]chan struct{}{"first": make(chan struct{}), "second": make(chan struct{})}
	f = fleettest.New(t, fleettest.Options{LLM: stallsByPrompt(stalls)})
	w = f.StartWorker(busyMaintainer)
	top = jobs(t, f)
	if err := w.Manager().WaitMaintaining(ctx, true); err != nil {
		t.Fatal(err)
	}
	first := submit(t, ctx, f.Pub, userJob("first"))
	<-first.metaRead
	queued = submit(t, ctx, f.Pub, userJob("second"))
	seq = lastJobSeq(t, top)
	late = new(atomic.Bool)
	return f, w, top, queued, seq, stalls, late
}

// TestQueueTimeoutRaceWorkerFirst: the maintainer reads the consumer's
// state while a job is queued; before it ends the job, a worker pulls it
// and stores its first event. The maintainer's ending is refused and it
// leaves the job to the worker: one terminal event, done.
func TestQueueTimeoutRaceWorkerFirst(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, time.Minute)
	_, w, top, queued, seq, stalls, late := raceSetup(t, ctx)
	paused, resume, left := make(chan struct{}), make(chan struct{}), make(chan uint64, 1)
	var pause, unpause sync.Once
	resumeOnce := func() { unpause.Do(func() { close(resume) }) }
	defer resumeOnce() // a failed test must not leave the maintainer paused
	w.Manager().SetMaintenanceHooks(managerHooks(late, func() {
		pause.Do(func() { close(paused); <-resume })
	}, nil, func(s uint64) { left <- s }))
	<-paused // the maintainer saw the queued job undelivered

	close(stalls["first"]) // the slot frees: the worker pulls the queued job
	<-queued.metaRead      // and stores its first event (shown live before it is stored)
	fleettest.Poll(t, ctx, "the first event stored", func() bool {
		_, err := top.Replies.GetLastMsgForSubject(ctx, "chat.write.default."+queued.reply.ID())
		return err == nil
	})
	if queued.res.meta.Type != protocol.EventMeta {
		t.Fatalf("queued job's first event: %s", describe(queued.res))
	}
	late.Store(true) // to the maintainer, the job is now an hour late
	resumeOnce()
	select {
	case s := <-left:
		if s != seq {
			t.Fatalf("left job %d, want %d", s, seq)
		}
	case <-ctx.Done():
		t.Fatal("the maintainer never decided on the job")
	}

	close(stalls["second"])
	if r := queued.wait(t); r.err != nil || r.answer == nil {
		t.Fatalf("queued job: %s", describe(r))
	}
	evs := replyEvents(t, top, queued.reply.ID())
	if terminals(evs) != 1 || evs[len(evs)-1].Type != protocol.EventDone {
		t.Errorf("reply events %+v: want exactly one terminal event, done", evs)
	}
	if st := w.Manager().Stats(); st.QueueTimeouts != 0 {
		t.Errorf("queue timeouts = %d, want 0", st.QueueTimeouts)
	}
}

// TestQueueTimeoutRaceMaintainerFirst: the maintainer stores a queued
// job's queue_timeout; before it deletes the job, a worker pulls it. The
// worker's first store is refused, and it terminates the job at once
// instead of leaving it for a redelivery: one terminal event, and the job
// leaves the queue while the maintainer still waits to delete it.
func TestQueueTimeoutRaceMaintainerFirst(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, time.Minute)
	f, w, top, queued, seq, stalls, late := raceSetup(t, ctx)
	defer close(stalls["second"])
	ended, resume := make(chan uint64, 1), make(chan struct{})
	var once sync.Once
	resumeOnce := func() { once.Do(func() { close(resume) }) }
	defer resumeOnce()
	w.Manager().SetMaintenanceHooks(managerHooks(late, nil, func(s uint64) { ended <- s; <-resume }, nil))
	late.Store(true)
	select {
	case s := <-ended:
		if s != seq {
			t.Fatalf("ended job %d, want %d", s, seq)
		}
	case <-ctx.Done():
		t.Fatal("the maintainer never ended the job")
	}
	if r := queued.wait(t); !queueEnding(r) {
		t.Fatalf("queued job: %s", describe(r))
	}

	// The slot frees: the worker pulls the job, still in the stream. It
	// must settle it well within AckWait (30s): no redelivery.
	close(stalls["first"])
	settled, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	eventually(t, settled, "the worker settles the job it cannot answer", func() bool {
		info, err := top.Jobs.Info(settled)
		ci, cerr := f.ConsumerInfo(settled)
		return err == nil && cerr == nil && info.State.Msgs == 0 && ci.NumAckPending == 0
	})
	resumeOnce()

	if evs := replyEvents(t, top, queued.reply.ID()); len(evs) != 1 || terminals(evs) != 1 {
		t.Errorf("reply events %+v: want the one queue_timeout error", evs)
	}
	if st := w.Manager().Stats(); st.Requests != 2 || st.QueueTimeouts != 1 {
		t.Errorf("requests %d, queue timeouts %d; want 2 and 1", st.Requests, st.QueueTimeouts)
	}
}

// managerHooks are the race tests' hooks: a clock an hour ahead once late
// is set, and the given hooks (nil: none).
func managerHooks(late *atomic.Bool, scanned func(), ended, left func(uint64)) manager.MaintenanceHooks {
	return manager.MaintenanceHooks{
		Now: func() time.Time {
			if late.Load() {
				return time.Now().Add(time.Hour)
			}
			return time.Now()
		},
		Scanned: scanned, Ended: ended, Left: left,
	}
}
