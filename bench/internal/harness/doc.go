// Package harness is chatfleet's benchmark harness: it measures a real
// fleet (a NATS server and `chatfleet worker` processes) on one machine,
// side by side with raw NATS on the same server and with an asynq + Redis
// pub/sub peer stack, and reports a table, JSON and PNG charts.
// The command is bench/cmd/chatfleet-bench (`make bench`); BENCHMARKS.md
// describes the scenarios and how to read them.
//
// # Processes
//
// Everything the benchmark measures is a real process: NATS is
// `chatfleet dev` with no workers (the embedded nats-server, file store)
// unless Config.NATSURL names a server; each worker is `chatfleet
// worker`, configured with CHATFLEET_* variables, and the gateway
// `chatfleet gateway` the same way; the peer's workers and
// producer are bench/peers/asynq (a module of its own, so chatfleet's
// module never depends on asynq or go-redis) and redis-server. The
// upstream (llm/llmtest, or a stamping server for chunk latencies) and
// the producer (the publisher library) run in the benchmark process. CPU
// time is read per process from /proc, RSS from /proc/<pid>/status.
//
// Each scenario gets a fresh topology: a prefix of its own (bench01,
// bench02, …) whose streams and buckets are deleted afterwards.
//
// # Smoke test
//
// TestSmoke runs every scenario at tiny sizes, as part of `go test ./...`,
// and checks the report, never the speed.
package harness
