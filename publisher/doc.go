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
// # What it asks of NATS
//
// Only requests a producer scoped to its own tenant may be allowed (see
// the README's "Security and tenants"; RES is the replies stream, e.g.
// CHAT_REPLIES):
//
//   - Submit publishes on <prefix>.jobs.<tenant> (a high or low job on
//     <prefix>.pjobs.<tenant>.<priority>), with a JetStream ack, and
//     subscribes to <prefix>.reply.<tenant>.<id>;
//   - LastEvent and the checks after a quiet spell send a direct get of
//     the last stored event, $JS.API.DIRECT.GET.RES.<prefix>.write.<tenant>.<id>;
//   - Attach and gap recovery read the stored reply with an ordered
//     consumer, created with its filter in the subject
//     ($JS.API.CONSUMER.CREATE.RES.<name>.<prefix>.write.<tenant>.<id>)
//     and pulled ($JS.API.CONSUMER.MSG.NEXT.RES.<name>);
//   - Cancel publishes on $KV.<cancel bucket>.<tenant>.<id>, with a
//     JetStream ack: a key-value put without a bucket lookup.
//
// It never looks a stream or bucket up. A producer in an account that
// imports the fleet's JetStream API under another prefix says which with
// WithAPIPrefix.
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
