// Package embed shows chatfleet used from another module, through its
// public packages only: a Go program that runs a worker in-process and
// submits a job to it. It is a module of its own, so an API that needs an
// internal package would not compile here.
package embed

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/manager"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/topology"
	"github.com/chatfleet/chatfleet/worker"
)

func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// A NATS server with JetStream, and an OpenAI-compatible upstream.
	ns, stop := runNATS()
	defer stop()
	up := llmtest.New()
	defer up.Close()

	// A worker, configured in Go.
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	w, err := worker.New(worker.Config{
		ID:       "embedded",
		Topology: topology.Config{QueueLimit: 100},
		Manager:  manager.Config{DefaultModel: "example-model", MaxConcurrentRequests: 8},
		LLM:      llm.Config{BaseURL: up.URL(), APIKey: "not-needed"},
		Logger:   slog.New(slog.DiscardHandler),
	}, nc)
	if err != nil {
		log.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer func() { _ = w.Stop(ctx) }()

	// A producer.
	pub, err := publisher.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	ans, err := pub.Complete(ctx, protocol.Job{Messages: []protocol.Message{{Role: "user", Content: protocol.TextContent("hello")}}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ans.Role, ans.FinishReason)
	// Output: leader stop
}

// Example_manager runs the manager under a fetch loop of one's own: what
// worker.Worker does, from the public API.
func Example_manager() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns, stop := runNATS()
	defer stop()
	up := llmtest.New()
	defer up.Close()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	top, err := topology.Ensure(ctx, js, topology.Config{})
	if err != nil {
		log.Fatal(err)
	}
	// The topology is checked, never changed: a mismatch is an error to match.
	if _, err := topology.Ensure(ctx, js, topology.Config{QueueLimit: 5}); errors.Is(err, topology.ErrMismatch) {
		fmt.Println("mismatch refused")
	}
	client, err := llm.New(llm.Config{BaseURL: up.URL(), APIKey: "not-needed"})
	if err != nil {
		log.Fatal(err)
	}
	m, err := manager.New(manager.Config{WorkerID: "own-loop", DefaultModel: "example-model", Logger: slog.New(slog.DiscardHandler)}, nc, js, top, client)
	if err != nil {
		log.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer func() { _ = m.Stop(ctx) }()

	pub, err := publisher.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	reply, err := pub.Submit(ctx, protocol.Job{Messages: []protocol.Message{{Role: "user", Content: protocol.TextContent("hello")}}})
	if err != nil {
		log.Fatal(err)
	}
	defer reply.Stop()
	permits, err := m.Slots().Reserve(ctx, 1)
	if err != nil {
		log.Fatal(err)
	}
	// Jobs wait in a queue per tenant and priority; this one is the default
	// tenant's, normal priority.
	queue, err := top.Queue(ctx, "default", "normal")
	if err != nil {
		log.Fatal(err)
	}
	batch, err := queue.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	for msg := range batch.Messages() {
		m.Handle(msg, permits[0]) // returns once the job is settled
	}
	ans, err := reply.Collect(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ans.Role, ans.FinishReason)
	// Output:
	// mismatch refused
	// leader stop
}

// runNATS starts a NATS server with JetStream for an example.
func runNATS() (*server.Server, func()) {
	dir, _ := os.MkdirTemp("", "embed")
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		log.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		log.Fatal("nats-server not ready")
	}
	return ns, func() { ns.Shutdown(); os.RemoveAll(dir) }
}
