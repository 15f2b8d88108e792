// Package worker is the chatfleet worker process: it pulls chat jobs from
// the shared JetStream consumer into a bounded pool, answers each through
// the manager, serves /healthz, /readyz and /metrics, and registers as the
// NATS micro service chatfleet-worker (its status endpoint).
//
// A worker pulls only as many jobs as it has free request slots, so a
// fleet shares a backlog fairly: two workers of capacity 4 given 8 slow
// jobs run 4 each (see manager.Slots for the waiting slots of leaders
// that wait for the upstream).
//
//	w, err := worker.New(worker.Config{LLM: llm.Config{BaseURL: "http://localhost:8000/v1"}}, nc)
//	if err := w.Start(ctx); err != nil { … }
//	<-ctx.Done()
//	grace, cancel := context.WithTimeout(context.Background(), 30*time.Second)
//	defer cancel()
//	err = w.Stop(grace) // errors.Is(err, worker.ErrGraceExpired): jobs were handed back
//
// # Stopping
//
// Stop stops pulling and lets in-flight jobs finish until its context
// ends. Then it stops hard: the rest are handed back to the queue (Nak
// without delay) so other workers take them at once, and leaders release
// their leases so followers on other workers take over without waiting for
// the lease to expire; the hard stop is bounded by Config.HardStopTimeout.
// A grace period that ran out is reported (ErrGraceExpired), not only
// logged.
package worker
