// Package publisher is chatfleet's producer library: submit a chat job,
// read its reply events as they stream, cancel it.
//
// # Submitting
//
//	pub, err := publisher.New(nc)
//	reply, err := pub.Submit(ctx, protocol.Job{
//		Messages: []protocol.Message{{Role: "user", Content: protocol.TextContent("hello")}},
//	})
//	defer reply.Stop()
//	for ev, err := range reply.Events(ctx) {
//		if err != nil {
//			return err
//		}
//		fmt.Print(ev.Content)
//	}
//
// Or wait for the whole answer:
//
//	answer, err := pub.Complete(ctx, job)
//
// # Reading replies reliably
//
// Submit subscribes to the reply subject before it publishes the job, so no
// event is missed. Every event carries a sequence number; a gap (a dropped
// message, a reconnect) or a quiet spell makes the reply switch to reading
// the replies stream, where every event is kept, from the first event
// onwards. Attach reads a reply by request ID the same way, from another
// process or after a restart.
//
// # Errors
//
// Submit returns ErrQueueFull when the jobs stream is at its backlog limit,
// a *JobError matching ErrQuotaExceeded when the job's tenant has as many
// jobs queued as the fleet allows one tenant, and a *JobError matching
// ErrInvalidJob for a job that fails validation. Complete returns a
// *JobError for an error event (match it with ErrInvalidJob, ErrTimeout,
// ErrUpstream, ErrQuotaExceeded, or read its Code) and ErrCancelled for a
// cancelled request.
package publisher
