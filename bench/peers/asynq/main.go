// Command asynqpeer is the peer stack chatfleet's benchmark compares
// against: what a team would otherwise build. Jobs are asynq tasks on
// Redis; a worker handles each by streaming the answer from an
// OpenAI-compatible upstream with go-openai (the client chatfleet uses)
// and publishing every chunk, then "done", on the job's Redis pub/sub
// channel. The producer pattern-subscribes to the reply channels once,
// before it enqueues anything, and demultiplexes by job ID.
//
// It lives in its own Go module so chatfleet's module never depends on
// asynq or go-redis. The benchmark (`go run ./bench/cmd/chatfleet-bench
// --peer`) builds it and runs it as child processes:
//
//	asynqpeer worker -redis 127.0.0.1:6380 -upstream http://127.0.0.1:8080/v1 -concurrency 64 -poll 1s
//	asynqpeer load   -redis 127.0.0.1:6380 -jobs 20000 -concurrency 256
//
// load prints one JSON object: per-job times to first chunk and to done,
// in nanoseconds, measured at the producer.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: asynqpeer worker|load [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "worker":
		err = worker(os.Args[2:])
	case "load":
		err = load(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "asynqpeer:", err)
		os.Exit(1)
	}
}

// payload is a task's payload.
type payload struct {
	Prompt  string `json:"prompt"`
	Channel string `json:"channel"` // where the reply goes
}

// event is one reply message on the channel.
type event struct {
	Seq     int    `json:"seq"`
	Type    string `json:"type"` // "chunk", "done" or "error"
	Content string `json:"content,omitempty"`
	Error   string `json:"error,omitempty"`
}

const taskType = "chat"
