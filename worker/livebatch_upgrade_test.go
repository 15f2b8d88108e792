package worker_test

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/worker"
)

// TestLiveReplyAcrossVersions: a fleet mid-upgrade. A live job (this
// version's publisher) begun by a worker of this version, which has stored
// part of its reply in batches, is handed back as that worker stops; a
// worker of the previous version, started in its place, (which knows single stored events only)
// takes it over: it reads the last stored batch as its last event,
// continues after it with a reset, and ends the reply. The producer reads
// the whole answer after a reset, each event once; a reader of the stored
// reply reads the same answer.
func TestLiveReplyAcrossVersions(t *testing.T) {
	bin := buildVersion(t, previousVersion)
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{LLM: firstCallStalls(t, 6)}) // the new worker's call
	w := f.StartWorker(func(c *worker.Config) {
		withModel(c)
		c.Manager.ChunkWindow = -1
		c.Manager.StoreBatchDelay = 5 * time.Millisecond
	})
	ctx := fleettest.Context(t, time.Minute)
	r, err := f.Pub.Submit(ctx, soloJob("upgrade me"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	replies, err := js.Stream(ctx, "CHAT_REPLIES")
	if err != nil {
		t.Fatal(err)
	}
	subject := "chat.write.default." + r.ID()
	fleettest.Poll(t, ctx, "a batch of the reply stored", func() bool {
		last, err := replies.GetLastMsgForSubject(ctx, subject)
		return err == nil && last.Header.Get(protocol.HeaderBatch) != ""
	})

	// The new worker stops at once, handing the job back; a worker of the
	// previous version comes up in its place.
	now, cancel := context.WithCancel(ctx)
	cancel()
	if err := w.Stop(now); !errors.Is(err, worker.ErrGraceExpired) {
		t.Fatalf("stop: %v, want the job handed back", err)
	}
	startOldWorker(t, f, bin, "previous")
	ans, err := r.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := llmtest.Answer(f.LLM.Requests()[0])
	if ans.Content != want || ans.Resets < 1 || ans.Worker != "previous" {
		t.Errorf("answer %q by %q after %d resets, want %q by the previous version after a reset", ans.Content, ans.Worker, ans.Resets, want)
	}

	attached, err := f.Pub.Attach(ctx, "default", r.ID())
	if err != nil {
		t.Fatal(err)
	}
	stored, err := attached.Collect(ctx)
	if err != nil || stored.Content != want {
		t.Errorf("the stored reply reads %q (%v), want %q", stored.Content, err, want)
	}
}

// TestLiveReplyBegunByPreviousVersion: the other way round. A worker of
// the previous version begins a job of this version's publisher (it
// ignores the live header: every event stored, none with an epoch) and
// hands it back as it stops; a worker of this version resumes it after
// the last stored event with a reset, and goes on live. The producer
// reads the whole answer after the reset.
func TestLiveReplyBegunByPreviousVersion(t *testing.T) {
	bin := buildVersion(t, previousVersion)
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{LLM: firstCallStalls(t, 3)}) // the previous version's call
	old := startOldWorker(t, f, bin, "previous", "CHATFLEET_SHUTDOWN_GRACE=100ms")
	ctx := fleettest.Context(t, time.Minute)
	r, err := f.Pub.Submit(ctx, soloJob("begun the old way"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	for seen := 0; seen < 2; { // meta and a chunk, from the previous version
		ev, err := r.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == protocol.EventMeta && ev.Worker != "previous" {
			t.Fatalf("begun by %q, want the previous version", ev.Worker)
		}
		if ev.Type == protocol.EventMeta || ev.Type == protocol.EventChunk {
			seen++
		}
	}
	w := f.StartWorker(func(c *worker.Config) { withModel(c); c.Manager.ChunkWindow = -1 })
	if err := old.Process.Signal(syscall.SIGTERM); err != nil { // it hands the job back
		t.Fatal(err)
	}
	var content string
	resets := 0
	for ended := false; !ended; {
		ev, err := r.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		switch ev.Type {
		case protocol.EventMeta:
			if ev.Worker != w.ID() {
				t.Errorf("resumed by %q, want %s", ev.Worker, w.ID())
			}
		case protocol.EventChunk:
			content += ev.Content
		case protocol.EventReset:
			content, resets = "", resets+1
		}
		ended = ev.Type.Terminal()
		if ended && ev.Type != protocol.EventDone {
			t.Fatalf("ended with %+v", ev)
		}
	}
	if want := llmtest.Answer(f.LLM.Requests()[0]); content != want || resets < 1 {
		t.Errorf("answer %q after %d resets, want %q after a reset", content, resets, want)
	}
}

// soloJob is a job that shares no generation: a takeover here is the
// reply's, not a follower's.
func soloJob(prompt string) protocol.Job {
	j, off := userJob(prompt), false
	j.Dedupe, j.Model = &off, "test-model" // the previous version's default model is set otherwise
	return j
}

// firstCallStalls is an upstream whose first call sends tokens tokens and
// then nothing until the test ends; later calls answer in full.
func firstCallStalls(t *testing.T, tokens int) []llmtest.Option {
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	return []llmtest.Option{llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		rep := llmtest.DefaultReply(r)
		if r.N == 1 {
			rep.StallAfter, rep.Release = tokens, stall
		}
		return rep
	})}
}
