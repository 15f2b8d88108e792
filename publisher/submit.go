package publisher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/chatfleet/chatfleet/internal/natstrace"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/subjects"
)

// jsErrStoreFailed is the JetStream error a DiscardNew stream at its limit
// answers with ("maximum messages exceeded"; "maximum messages per subject
// exceeded" at its per-tenant cap).
const jsErrStoreFailed jetstream.ErrorCode = 10077

// Submit validates job, subscribes to its reply subject and publishes it.
// An empty job.ID gets a fresh unguessable one and an empty tenant becomes
// "default"; the model may be left empty for the worker's default. The
// returned Reply must be stopped (Stop, or reading it to its end).
//
// Submitting the same ID again within the duplicate window stores the job
// once; the second Reply reads the first one's events.
//
// A job's priority (high or low) is sent as its subject (PriorityJobs), not
// in its body. A fleet whose jobs stream has the layout before priorities
// does not store that subject: Submit then sends the job as a normal one,
// which workers of every version serve (see the README's Upgrades).
func (p *Publisher) Submit(ctx context.Context, job protocol.Job) (*Reply, error) {
	if job.ID == "" {
		job.ID = protocol.NewID()
	}
	if err := validateForSubmit(&job); err != nil {
		return nil, err
	}
	subject := p.names.Jobs(job.Tenant)
	if job.Priority.Rank() != protocol.PriorityNormal.Rank() {
		subject = p.names.PriorityJobs(job.Tenant, string(job.Priority))
	}
	job.Priority = "" // the subject carries it
	data, err := json.Marshal(job)
	if err != nil {
		return nil, err
	}
	r, err := p.subscribe(job.Tenant, job.ID)
	if err != nil {
		return nil, err
	}
	ctx, span := p.tracer.Start(ctx, "send "+subject, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", subject),
			attribute.String("messaging.message.id", job.ID),
			attribute.Int("messaging.message.body.size", len(data)),
		))
	defer span.End()
	msg := nats.NewMsg(subject)
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, protocol.MsgID(job.Tenant, job.ID))
	msg.Header.Set(protocol.HeaderLive, "1") // Next follows HeaderEpoch's rules
	natstrace.Inject(ctx, msg.Header)
	ack, err := p.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(p.names.JobsStream()))
	if subject != p.names.Jobs(job.Tenant) && (errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)) {
		// The fleet has not migrated to priorities yet: a normal job.
		msg.Subject = p.names.Jobs(job.Tenant)
		ack, err = p.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(p.names.JobsStream()))
	}
	if err != nil {
		r.Stop()
		err = p.publishError(&job, err)
		span.SetStatus(codes.Error, err.Error())
		return nil, err
	}
	r.jobSeq = strconv.FormatUint(ack.Sequence, 10)
	if ack.Duplicate {
		// The job was stored before: its events may already be gone from
		// the live subject, so read them from the stream.
		r.fromStream, r.duplicate = true, true
	}
	return r, nil
}

// LastEvent returns the last event the replies stream holds for the
// request tenant/id; found is false when it holds none (the ID was never
// used, or its reply is older than the stream keeps replies). An ID whose
// reply is found must not be submitted again: within the duplicate window
// the jobs stream drops it, after it the fleet ends it with duplicate_id.
// err is a decode error when found but the message is not an event.
func (p *Publisher) LastEvent(ctx context.Context, tenant, id string) (ev protocol.Event, found bool, err error) {
	if err := subjects.ValidName("tenant", tenant); err != nil {
		return ev, false, err
	}
	if err := subjects.ValidName("id", id); err != nil {
		return ev, false, err
	}
	data, found, err := p.lastStored(ctx, p.names.ReplyWrite(tenant, id))
	if !found || err != nil {
		return ev, false, err
	}
	ev, err = protocol.DecodeEvent(data)
	return ev, true, err
}

// validateForSubmit checks what a producer can know: everything but the
// model, which a worker may default.
func validateForSubmit(job *protocol.Job) error {
	check := *job
	check.Normalize("-")
	if err := check.Validate(protocol.Limits{MaxJobBytes: 1 << 30, MaxMessages: 1 << 30}); err != nil {
		var perr *protocol.Error
		errors.As(err, &perr)
		return &JobError{Tenant: check.Tenant, ID: check.ID, Err: *perr}
	}
	job.V, job.Tenant = check.V, check.Tenant
	return nil
}

func (p *Publisher) publishError(job *protocol.Job, err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch {
		case apiErr.ErrorCode == jsErrStoreFailed && strings.Contains(apiErr.Description, "per subject"):
			// The stream's per-tenant cap (one subject per tenant).
			return &JobError{Tenant: job.Tenant, ID: job.ID, Err: protocol.Error{Code: protocol.CodeQuotaExceeded, Limit: protocol.LimitMaxQueued,
				Message: "tenant " + job.Tenant + " has as many jobs queued as the fleet allows one tenant (CHATFLEET_MAX_QUEUED_PER_TENANT); the job was not submitted"}}
		case apiErr.ErrorCode == jsErrStoreFailed && strings.Contains(apiErr.Description, "maximum"):
			return errors.Join(ErrQueueFull, err)
		case apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum:
			return &JobError{Tenant: job.Tenant, ID: job.ID, Err: *protocol.Invalid("", "job is larger than the jobs stream accepts")}
		}
	}
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("%w %s stores %s (%s): %w", ErrNoStream, p.names.JobsStream(), p.names.Jobs(job.Tenant), topologyHint, err)
	}
	if errors.Is(err, nats.ErrMaxPayload) {
		return &JobError{Tenant: job.Tenant, ID: job.ID, Err: *protocol.Invalid("", "job is larger than the NATS server's max_payload")}
	}
	return err
}

// Complete submits job and waits for its terminal event. It returns the
// answer on done, ErrCancelled on cancelled, and a *JobError on error.
// Resets (after a failover) are applied: the answer holds only the output
// that followed the last reset.
func (p *Publisher) Complete(ctx context.Context, job protocol.Job) (*Answer, error) {
	r, err := p.Submit(ctx, job)
	if err != nil {
		return nil, err
	}
	defer r.Stop()
	return r.Collect(ctx)
}
