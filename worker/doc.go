// Package worker is the chatfleet worker process: it pulls chat jobs from
// the shared JetStream consumer into a bounded pool, answers each through
// the manager, and serves /healthz.
//
// A worker pulls only as many jobs as it has free request slots, so a
// fleet shares a backlog fairly: two workers of capacity 4 given 8 slow
// jobs run 4 each.
//
//	w, err := worker.New(worker.Config{LLM: llm.Config{BaseURL: "http://localhost:8000/v1"}}, nc)
//	if err := w.Start(ctx); err != nil { … }
//	<-ctx.Done()
//	_ = w.Stop(context.WithTimeout(context.Background(), 30*time.Second))
//
// # Stopping
//
// Stop stops pulling, lets in-flight jobs finish until its context ends,
// then hands the rest back to the queue (Nak without delay) so other
// workers take them at once; leaders release their leases so followers on
// other workers take over without waiting for the lease to expire.
package worker
