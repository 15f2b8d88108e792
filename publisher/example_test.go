package publisher_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/chatfleet/chatfleet/internal/natsserver"
	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/manager"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/worker"
)

// runFleet starts what a producer needs on the other side: NATS with
// JetStream, the simulated model and one worker. It returns a connection
// and a func that stops everything.
func runFleet() (*nats.Conn, func()) {
	dir, _ := os.MkdirTemp("", "chatfleet-example")
	srv, err := natsserver.Start(natsserver.Config{StoreDir: dir})
	if err != nil {
		panic(err)
	}
	model := llmtest.New()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		panic(err)
	}
	w, err := worker.New(worker.Config{
		LLM:     llm.Config{BaseURL: model.URL()},
		Manager: manager.Config{DefaultModel: "demo"},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, nc)
	if err != nil {
		panic(err)
	}
	if err := w.Start(context.Background()); err != nil {
		panic(err)
	}
	return nc, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = w.Stop(ctx)
		nc.Close()
		model.Close()
		srv.Shutdown()
		_ = os.RemoveAll(dir)
	}
}

func ExamplePublisher_Complete() {
	nc, stop := runFleet()
	defer stop()

	pub, err := publisher.New(nc)
	if err != nil {
		panic(err)
	}
	answer, err := pub.Complete(context.Background(), protocol.Job{
		Messages: []protocol.Message{{Role: protocol.RoleUser, Content: protocol.TextContent("hello")}},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(answer.Content)
	fmt.Println(answer.Role, answer.FinishReason)
	// Output:
	// Simulated answer to "hello". This is chatfleet's built-in model (demo).
	// leader stop
}

func ExampleReply_Events() {
	nc, stop := runFleet()
	defer stop()

	pub, err := publisher.New(nc)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	reply, err := pub.Submit(ctx, protocol.Job{
		ID:       "example-1",
		Messages: []protocol.Message{{Role: protocol.RoleUser, Content: protocol.TextContent("hi")}},
	})
	if err != nil {
		panic(err)
	}
	defer reply.Stop()
	for ev, err := range reply.Events(ctx) {
		if err != nil {
			panic(err)
		}
		switch ev.Type {
		case protocol.EventMeta:
			fmt.Println(ev.Seq, ev.Type, ev.Role)
		case protocol.EventChunk:
			// ev.Content is the next piece of the answer
		case protocol.EventDone:
			fmt.Println(ev.Seq > 2, ev.Type, ev.FinishReason)
		}
	}
	// Output:
	// 1 meta leader
	// true done stop
}
