package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/subjects"
)

// cancelTenant cancels every request of tenant the jobs stream holds: the
// queued ones and the running ones, since a work-queue stream keeps a job
// until its worker acks it. Each is cancelled as `chatfleet cancel` does,
// through the cancel bucket: a queued job ends cancelled when pulled, a
// running one where it runs, and a request only leaves a generation it
// shares with another. Jobs published after the stream was read are not
// cancelled: pause the tenant first to stop new ones from starting.
func cancelTenant(ctx context.Context, js jetstream.JetStream, names subjects.Names, tenant string, io IO) error {
	jobs, err := js.Stream(ctx, names.JobsStream())
	if err != nil {
		return fmt.Errorf("jobs stream %s: %w (%s)", names.JobsStream(), err, topologyHint)
	}
	cancels, err := js.KeyValue(ctx, names.CancelBucket())
	if err != nil {
		return fmt.Errorf("bucket %s: %w (%s)", names.CancelBucket(), err, topologyHint)
	}
	type queued struct {
		seq uint64
		id  string
	}
	var found []queued
	skipped := 0
	for _, filter := range names.TenantJobs(tenant) { // every priority
		for seq := uint64(1); ; {
			msg, err := jobs.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				break
			}
			if err != nil {
				return err
			}
			seq = msg.Sequence + 1
			if id := jobID(msg); id != "" {
				found = append(found, queued{msg.Sequence, id})
			} else {
				skipped++ // no valid ID: its worker rejects it anyway
			}
		}
	}
	slices.SortFunc(found, func(a, b queued) int { return cmp.Compare(a.seq, b.seq) })
	ids := make([]string, len(found))
	for i, q := range found {
		ids[i] = q.id
	}
	// Newest first: workers see the cancels in this order, so a queued
	// job's is known before a running job's cancel frees the slot it
	// would be pulled into.
	now := []byte(time.Now().UTC().Format(time.RFC3339Nano))
	for _, id := range slices.Backward(ids) {
		if _, err := cancels.Put(ctx, names.RequestKey(tenant, id), now); err != nil {
			return fmt.Errorf("cancel %s/%s: %w", tenant, id, err)
		}
	}
	fmt.Fprintf(io.Out, "cancel requested for %d requests of tenant %s, queued or running\n", len(ids), tenant)
	if skipped > 0 {
		fmt.Fprintf(io.Out, "%d jobs without a valid request ID left to their workers, which reject them\n", skipped)
	}
	return nil
}

// jobID is the request ID of a job in the jobs stream, as a worker reads
// it: the job's id, else the Nats-Msg-Id the publisher sets; "" when
// neither is a valid ID.
func jobID(msg *jetstream.RawStreamMsg) string {
	var partial struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(msg.Data, &partial) == nil && subjects.ValidName("id", partial.ID) == nil {
		return partial.ID
	}
	if id := msg.Header.Get(jetstream.MsgIDHeader); subjects.ValidName("id", id) == nil {
		return id
	}
	return ""
}
