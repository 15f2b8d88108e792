package manager_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/topology"
	"github.com/chatfleet/chatfleet/worker"
)

// scripted returns upstream options that answer call n with replies[n-1]
// (the default reply once they run out); a reply with no tokens streams
// the default answer.
func scripted(replies ...llmtest.Reply) []llmtest.Option {
	return []llmtest.Option{llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		rep := llmtest.DefaultReply(r)
		if r.N <= len(replies) {
			s := replies[r.N-1]
			rep.Status, rep.Message, rep.RetryAfter = s.Status, s.Message, s.RetryAfter
			rep.StallAfter, rep.Release, rep.CutAfter = s.StallAfter, s.Release, s.CutAfter
		}
		return rep
	})}
}

func errorCode(err error) protocol.Code {
	var jerr *publisher.JobError
	if errors.As(err, &jerr) {
		return jerr.Code()
	}
	return ""
}

func TestQueueTimeout(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{Topology: topology.Config{QueueTimeout: time.Nanosecond}}) // every job waited longer
	w := f.StartWorker(nil)
	ctx := ctxFor(t, 30*time.Second)
	_, err := f.Pub.Complete(ctx, userJob("too late"))
	if errorCode(err) != protocol.CodeQueueTimeout || !errors.Is(err, publisher.ErrTimeout) {
		t.Fatalf("err = %v, want queue_timeout", err)
	}
	if f.LLM.Calls() != 0 {
		t.Errorf("upstream calls %d; want 0", f.LLM.Calls())
	}
	// The worker's pull and the maintainer's sweep (the same worker here)
	// both count a queue timeout before they store it, and the one whose
	// store is refused takes its count back a moment after the producer
	// heard: the count settles at 1.
	fleettest.Poll(t, ctx, "one queue timeout counted", func() bool { return w.Manager().Stats().QueueTimeouts == 1 })
}

func TestProcessingTimeout(t *testing.T) {
	t.Parallel()
	stall := make(chan struct{})
	defer close(stall)
	f := fleettest.New(t, fleettest.Options{LLM: scripted(llmtest.Reply{StallAfter: 2, Release: stall})})
	f.StartWorker(nil)
	ctx := ctxFor(t, 30*time.Second)
	job := userJob("slow")
	job.TimeoutMS = 300
	_, err := f.Pub.Complete(ctx, job)
	if errorCode(err) != protocol.CodeTimeout {
		t.Fatalf("err = %v, want timeout", err)
	}
	if err := f.LLM.WaitDisconnects(ctx, 1); err != nil {
		t.Fatalf("the upstream call outlived every request: %v", err)
	}
}

// TestMidStreamFailureRetried: a stream cut after partial output starts
// again behind a reset; the producer ends with the complete answer.
func TestMidStreamFailureRetried(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{LLM: scripted(llmtest.Reply{CutAfter: 3})})
	f.StartWorker(func(c *worker.Config) { c.Manager.ChunkWindow = -1 })
	ctx := ctxFor(t, 30*time.Second)
	ans, err := f.Pub.Complete(ctx, userJob("cut me off"))
	if err != nil {
		t.Fatal(err)
	}
	if ans.Resets != 1 || ans.Content != llmtest.Answer(f.LLM.Requests()[1]) || f.LLM.Calls() != 2 {
		t.Errorf("resets %d, calls %d, content %q", ans.Resets, f.LLM.Calls(), ans.Content)
	}
}

// TestMidStreamFailureEnds: with mid-stream retries off, the same cut ends
// the request with upstream_error.
func TestMidStreamFailureEnds(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{LLM: scripted(llmtest.Reply{CutAfter: 3})})
	f.StartWorker(func(c *worker.Config) { c.Manager.MidStreamRetries = -1 })
	ctx := ctxFor(t, 30*time.Second)
	_, err := f.Pub.Complete(ctx, userJob("cut me off"))
	if errorCode(err) != protocol.CodeUpstreamError || f.LLM.Calls() != 1 {
		t.Errorf("err %v, calls %d; want upstream_error after 1 call", err, f.LLM.Calls())
	}
}

// TestHangingUpstreamCutOff: an upstream that goes silent mid-answer is cut
// off by the idle timeout and the answer starts again.
func TestHangingUpstreamCutOff(t *testing.T) {
	t.Parallel()
	stall := make(chan struct{})
	defer close(stall)
	f := fleettest.New(t, fleettest.Options{LLM: scripted(llmtest.Reply{StallAfter: 2, Release: stall})})
	f.StartWorker(func(c *worker.Config) { c.LLM.IdleTimeout = 300 * time.Millisecond })
	ctx := ctxFor(t, 30*time.Second)
	ans, err := f.Pub.Complete(ctx, userJob("hang"))
	if err != nil {
		t.Fatal(err)
	}
	if ans.Resets != 1 || f.LLM.Calls() != 2 || f.LLM.Disconnects() != 1 {
		t.Errorf("resets %d, calls %d, disconnects %d; want 1, 2, 1", ans.Resets, f.LLM.Calls(), f.LLM.Disconnects())
	}
}

// TestUpstreamRetriedBeforeFirstToken: 503 and 429 before the first token
// are retried; the producer sees only the answer.
func TestUpstreamRetriedBeforeFirstToken(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{LLM: scripted(llmtest.Reply{Status: 503}, llmtest.Reply{Status: 429, RetryAfter: time.Second})})
	f.StartWorker(nil)
	ctx := ctxFor(t, 30*time.Second)
	ans, err := f.Pub.Complete(ctx, userJob("try again"))
	if err != nil {
		t.Fatal(err)
	}
	if f.LLM.Calls() != 3 || ans.Resets != 0 || ans.Content != llmtest.Answer(f.LLM.Requests()[2]) {
		t.Errorf("calls %d, resets %d, content %q", f.LLM.Calls(), ans.Resets, ans.Content)
	}
}

// TestUpstreamErrorsByCode: retries exhausted and refusals end with their
// stable codes; a refusal is not retried.
func TestUpstreamErrorsByCode(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		status int
		code   protocol.Code
		calls  int
	}{
		{503, protocol.CodeUpstreamUnavailable, 3},
		{429, protocol.CodeRateLimited, 3},
		{401, protocol.CodeUpstreamError, 1},
		{404, protocol.CodeUpstreamError, 1},
	} {
		f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithScript(func(llmtest.Request) llmtest.Reply {
			return llmtest.Reply{Status: tt.status, Message: "upstream says no"}
		})}})
		f.StartWorker(func(c *worker.Config) {
			c.LLM.MaxRetries = 2
			c.LLM.RetryBaseDelay = time.Millisecond
		})
		_, err := f.Pub.Complete(ctxFor(t, 30*time.Second), userJob("no"))
		var jerr *publisher.JobError
		if !errors.As(err, &jerr) || jerr.Code() != tt.code || jerr.Err.Status != tt.status || !strings.Contains(jerr.Err.Message, "upstream says no") {
			t.Errorf("%d: err = %v, want %s", tt.status, err, tt.code)
		}
		if f.LLM.Calls() != tt.calls {
			t.Errorf("%d: calls = %d, want %d", tt.status, f.LLM.Calls(), tt.calls)
		}
	}
}

// TestCircuitBreaker: a dead upstream opens the breaker, after which jobs
// fail fast without an upstream call; after the cooldown it closes again
// by itself.
func TestCircuitBreaker(t *testing.T) {
	t.Parallel()
	healthy := make(chan struct{})
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		select {
		case <-healthy:
			return llmtest.DefaultReply(r)
		default:
			return llmtest.Reply{Status: 503}
		}
	})}})
	f.StartWorker(func(c *worker.Config) {
		c.LLM.MaxRetries = -1
		c.LLM.BreakerFailures = 2
		c.LLM.BreakerCooldown = 200 * time.Millisecond
	})
	ctx := ctxFor(t, 30*time.Second)
	job := userJob("anyone there?")
	job.Dedupe, job.Cache = protocol.Bool(false), protocol.Bool(false)
	for range 2 {
		if _, err := f.Pub.Complete(ctx, job); errorCode(err) != protocol.CodeUpstreamUnavailable {
			t.Fatalf("err = %v", err)
		}
	}
	if _, err := f.Pub.Complete(ctx, job); errorCode(err) != protocol.CodeUpstreamUnavailable || f.LLM.Calls() != 2 {
		t.Fatalf("open breaker: err %v, calls %d; want a fast failure with no third call", err, f.LLM.Calls())
	}
	close(healthy)
	// The cooldown is time itself: poll, with a deadline, until it passes.
	for {
		_, err := f.Pub.Complete(ctx, job)
		if err == nil {
			break
		}
		if errorCode(err) != protocol.CodeUpstreamUnavailable || ctx.Err() != nil {
			t.Fatalf("err = %v while waiting for the breaker to close", err)
		}
	}
}

// panicPrompt starts the prompt of a job the serve hook makes panic.
const panicPrompt = "please panic:"

// TestPanicIsRecovered: a panic while handling one job ends that job with
// an internal error and a dead letter; the worker goes on.
func TestPanicIsRecovered(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	w := f.StartWorker(nil)
	w.Manager().SetServeHook(func(j *protocol.Job) {
		if last := j.Messages[len(j.Messages)-1]; strings.HasPrefix(last.Content.Text, panicPrompt) {
			panic("a test asked for a panic")
		}
	})
	ctx := ctxFor(t, 30*time.Second)
	_, err := f.Pub.Complete(ctx, userJob(panicPrompt+" now"))
	if errorCode(err) != protocol.CodeInternal {
		t.Fatalf("err = %v, want internal", err)
	}
	if _, err := f.Pub.Complete(ctx, userJob("and now something normal")); err != nil {
		t.Fatalf("the worker did not go on: %v", err)
	}
	st := w.Manager().Stats()
	if st.Panics != 1 || st.DeadLettered != 1 {
		t.Errorf("panics %d, dead letters %d; want 1 and 1", st.Panics, st.DeadLettered)
	}
	dl := deadLetters(t, f)
	if len(dl) != 1 || dl[0].Header.Get(protocol.DeadLetterCode) != "internal" || !strings.Contains(string(dl[0].Data), panicPrompt) {
		t.Errorf("dead letters = %+v", dl)
	}
}

// TestMaxDeliveriesDeadLettered: a job delivered MaxDeliver times without
// an answer (a crash loop; here the test is the crashing consumer) is
// dead-lettered, removed from the queue, and its producer gets an error.
func TestMaxDeliveriesDeadLettered(t *testing.T) {
	t.Parallel()
	top := topology.Config{MaxDeliver: 2, AckWait: time.Second}
	f := fleettest.New(t, fleettest.Options{Topology: top})
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	ctx := ctxFor(t, 30*time.Second)
	tp, err := topology.Ensure(ctx, js, top)
	if err != nil {
		t.Fatal(err)
	}
	r, err := f.Pub.Submit(ctx, userJob("I crash workers"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	queue, err := tp.Queue(ctx, "default", "normal")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // two deliveries, never acked
		batch, err := queue.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for range batch.Messages() {
			n++
		}
		if n != 1 {
			t.Fatalf("delivery: got %d messages", n)
		}
	}
	w := f.StartWorker(nil) // handles the advisory when the last delivery times out
	_, err = r.Collect(ctx)
	if errorCode(err) != protocol.CodeInternal || !strings.Contains(err.Error(), "2 deliveries") {
		t.Fatalf("err = %v, want internal after 2 deliveries", err)
	}
	dl := deadLetters(t, f)
	if len(dl) != 1 || dl[0].Header.Get(protocol.DeadLetterDeliveries) != "2" || dl[0].Header.Get(protocol.DeadLetterRequest) != r.ID() {
		t.Errorf("dead letters = %+v", dl)
	}
	// The job is deleted after its producer's error is stored.
	eventually(t, ctx, "the job leaves the queue", func() bool {
		info, err := tp.Jobs.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	if f.LLM.Calls() != 0 || w.Manager().Stats().DeadLettered != 1 {
		t.Errorf("calls %d, dead letters %+v", f.LLM.Calls(), w.Manager().Stats())
	}
}

// deadLetters returns every message in the dead-letter stream.
func deadLetters(t *testing.T, f *fleettest.Fleet) []*jetstream.RawStreamMsg {
	t.Helper()
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	ctx := ctxFor(t, 10*time.Second)
	s, err := js.Stream(ctx, f.Topology.WithDefaults().Names.DeadLetterStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err == nil {
			out = append(out, m)
		}
	}
	return out
}

// TestLeaderHandsOverOnStop: a leader stopped with no grace hands its
// generation over: a follower elsewhere takes over at its next lease check
// (not after the lease expires), and both producers end with the complete
// answer and one terminal event each.
func TestLeaderHandsOverOnStop(t *testing.T) {
	t.Parallel()
	stall := make(chan struct{})
	defer close(stall)
	f := fleettest.New(t, fleettest.Options{LLM: midStream(stall), Topology: topology.Config{LeaseTTL: 3 * time.Second}})
	w1 := f.StartWorker(capacity(1))
	ctx := ctxFor(t, 30*time.Second)
	job := userJob("hand it over")
	leader := submit(t, ctx, f.Pub, job)
	<-leader.metaRead
	if err := f.LLM.WaitCalls(ctx, 1); err != nil {
		t.Fatal(err)
	}
	w2 := f.StartWorker(nil)
	follower := submit(t, ctx, f.Pub, job)
	<-follower.metaRead
	noGrace, cancel := context.WithCancel(context.Background())
	cancel()
	// No grace: the running jobs are handed back, and Stop says so.
	if err := w1.Stop(noGrace); !errors.Is(err, worker.ErrGraceExpired) {
		t.Fatalf("stop: %v, want ErrGraceExpired", err)
	}
	// Released, not left to expire: once Stop returns, no lease names w1.
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	kv, err := js.KeyValue(ctx, f.Topology.WithDefaults().Names.InflightBucket())
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := kv.Keys(ctx)
	for _, k := range keys {
		if e, err := kv.Get(ctx, k); err == nil && strings.Contains(string(e.Value()), `"worker":"`+w1.ID()+`"`) {
			t.Errorf("the stopped leader's lease is still there: %s", e.Value())
		}
	}
	want := ""
	for name, s := range map[string]*submitted{"leader": leader, "follower": follower} {
		r := s.wait(t)
		if want == "" {
			want = llmtest.Answer(f.LLM.Requests()[1])
		}
		if r.err != nil || r.answer.Content != want {
			t.Errorf("%s: %s", name, describe(r))
		}
	}
	if st := w2.Manager().Stats(); st.Takeovers != 1 || f.LLM.Calls() != 2 {
		t.Errorf("takeovers %d, calls %d; want 1 and 2", st.Takeovers, f.LLM.Calls())
	}
}
