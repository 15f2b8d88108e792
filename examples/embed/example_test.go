// Package embed shows chatfleet used from another module, through its
// public packages only: a Go program that runs a worker in-process and
// submits a job to it. It is a module of its own, so an API that needs an
// internal package would not compile here.
package embed

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

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
	dir, _ := os.MkdirTemp("", "embed")
	defer os.RemoveAll(dir)
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		log.Fatal(err)
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		log.Fatal("nats-server not ready")
	}
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
