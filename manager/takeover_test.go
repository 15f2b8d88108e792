package manager_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/topology"
	"github.com/chatfleet/chatfleet/worker"
)

// startChildWorker runs `chatfleet worker` in a separate OS process (this
// test binary, re-executed) against f. Its logs go to the returned buffer.
func startChildWorker(t *testing.T, f *fleettest.Fleet, id string, extraEnv ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.Env = append(os.Environ(),
		childEnv+"=worker",
		"CHATFLEET_NATS_URL="+f.NATS.ClientURL(),
		"CHATFLEET_LLM_BASE_URL="+f.LLM.URL(),
		"CHATFLEET_WORKER_ID="+id,
		"CHATFLEET_HTTP_ADDR=",
		"CHATFLEET_LEASE_TTL="+f.Topology.LeaseTTL.String(),
		"CHATFLEET_ACK_WAIT="+f.Topology.AckWait.String(),
		"CHATFLEET_LOG_LEVEL=debug",
	)
	cmd.Env = append(cmd.Env, extraEnv...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("child worker %s logs:\n%s", id, logs.String())
		}
	})
	return cmd, logs
}

// syncBuffer collects a child's output and wakes waiters on every write.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
	return s.b.Write(p)
}

// waitFor waits until the output contains sub.
func (s *syncBuffer) waitFor(ctx context.Context, sub string) error {
	for {
		s.mu.Lock()
		if strings.Contains(s.b.String(), sub) {
			s.mu.Unlock()
			return nil
		}
		if s.changed == nil {
			s.changed = make(chan struct{})
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// watched reads a reply and says when its first chunk arrived.
type watched struct {
	firstChunk chan struct{}
	done       chan struct{}
	meta       protocol.Event
	answer     publisher.Answer
	err        error
}

func watch(ctx context.Context, r *publisher.Reply) *watched {
	w := &watched{firstChunk: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer r.Stop()
		var once sync.Once
		defer once.Do(func() { close(w.firstChunk) })
		for ev, err := range r.Events(ctx) {
			if err != nil {
				w.err = err
				return
			}
			switch ev.Type {
			case protocol.EventMeta:
				if w.meta.Type == "" {
					w.meta = ev
				}
			case protocol.EventChunk:
				w.answer.Content += ev.Content
				once.Do(func() { close(w.firstChunk) })
			case protocol.EventReset:
				w.answer.Content = ""
				w.answer.Resets++
			case protocol.EventDone:
				w.answer.FinishReason = ev.FinishReason
			case protocol.EventError, protocol.EventCancelled:
				w.err = &publisher.JobError{Err: protocol.Error{Code: "ended with " + protocol.Code(ev.Type)}}
			}
		}
	}()
	return w
}

// TestLeaderKilledFollowerTakesOver: a worker process leading a generation
// is killed with SIGKILL mid-stream. A follower on another worker takes
// over within the lease TTL and regenerates; every producer, the dead
// leader's own included (its job is redelivered), ends with the complete
// answer, after a reset where it had seen partial output.
func TestLeaderKilledFollowerTakesOver(t *testing.T) {
	t.Parallel()
	stall := make(chan struct{})
	defer close(stall)
	f := fleettest.New(t, fleettest.Options{
		LLM:      midStream(stall), // call 1: 3 tokens, then nothing until its client dies
		Topology: topology.Config{LeaseTTL: 2 * time.Second, AckWait: 2 * time.Second},
	})
	child, _ := startChildWorker(t, f, "doomed", "CHATFLEET_MAX_CONCURRENT_REQUESTS=1", "CHATFLEET_CHUNK_WINDOW=0")
	ctx := ctxFor(t, 2*time.Minute)
	job := userJob("survive a crash")

	r, err := f.Pub.Submit(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	leader := watch(ctx, r)
	<-leader.firstChunk
	if leader.meta.Worker != "doomed" || leader.meta.Role != protocol.RoleLeader {
		t.Fatalf("leader meta = %+v", leader.meta)
	}

	// One other worker: workers pull from per-tenant queues when the
	// stream announces a job, so with two the followers may all land on
	// one, and the dead leader's redelivered job on the other, which would
	// lead afresh instead of a follower taking over.
	noMerge := func(c *worker.Config) { c.Manager.ChunkWindow = -1 }
	w2 := f.StartWorker(noMerge)
	var followers []*watched
	for range 6 {
		r, err := f.Pub.Submit(ctx, job)
		if err != nil {
			t.Fatal(err)
		}
		followers = append(followers, watch(ctx, r))
	}
	for _, fw := range followers {
		<-fw.firstChunk // each has seen partial output of the doomed generation
		if fw.err != nil || fw.meta.Role != protocol.RoleFollower {
			t.Fatalf("follower: meta %+v err %v", fw.meta, fw.err)
		}
	}

	if err := child.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = child.Wait()

	for _, w := range append(followers, leader) {
		<-w.done
	}
	want := llmtest.Answer(f.LLM.Requests()[0])
	for i, w := range append(followers, leader) {
		if w.err != nil || w.answer.Content != want || w.answer.FinishReason != "stop" {
			t.Errorf("producer %d: err %v, content %q, want %q", i, w.err, w.answer.Content, want)
		}
		if w.answer.Resets < 1 {
			t.Errorf("producer %d saw partial output but no reset", i)
		}
	}
	if calls := f.LLM.Calls(); calls != 2 {
		t.Errorf("upstream calls = %d, want 2 (the dead leader's and the takeover's)", calls)
	}
	if st := statsOf(w2); st.Takeovers != 1 {
		t.Errorf("takeovers = %d, want 1 (stats %+v)", st.Takeovers, st)
	}
}
