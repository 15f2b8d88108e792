//go:build faults

package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
)

// TestPublisherLostResponse: the publisher's connection is partitioned one
// way (what it sends reaches the server, nothing comes back) while its
// replies wait on a paused upstream, so the JetStream request of a reply
// checking the replies stream is never answered; then the connection is
// cut, the publisher reconnects and the answers go on. Every reply must
// recover and end with its complete answer well within its own wait: a
// request whose answer was lost may cost a reply one check, not its whole
// wait, and must not hold up the publisher's other replies.
func TestPublisherLostResponse(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	px := newProxy(t, hostPort(t, srv.ClientURL()))
	script, release := paused(3, 20*time.Millisecond)
	f := newFleet(t, srv.ClientURL(), options{
		llm:          []llmtest.Option{script},
		workers:      1,
		release:      release,
		ownPublisher: true,
	})
	f.startPublisher(px.URL(), 200*time.Millisecond)
	ctx := fleettest.Context(t, time.Minute)
	replyCtx := fleettest.Context(t, 20*time.Second) // each reply's whole wait

	jobs := make([]*job, 5)
	for i := range jobs {
		jobs[i] = f.submit(replyCtx, fmt.Sprintf("lost-%d", i), fmt.Sprintf("lost response prompt %d", i))
	}
	waitTokens(t, ctx, jobs, 3)

	// The replies go quiet and check the replies stream; the answer to
	// the first JetStream request is lost.
	asked := px.sent("$JS.API.")
	px.dropFromServer(true)
	select {
	case <-asked:
	case <-ctx.Done():
		t.Fatal("no reply checked the replies stream")
	}
	px.cut()
	px.dropFromServer(false)
	if err := f.links.wait(ctx, "the publisher to come back", func(_, _, r int) bool { return r >= 1 }); err != nil {
		t.Fatal(err)
	}
	release()

	waitDone(t, ctx, jobs)
	f.stopWorkers()
	f.checkAnswers(ctx, jobs)
}
