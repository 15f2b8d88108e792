package topology

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/subjects"
)

// QueueIdleTimeout is how long a tenant's queue consumer lives without a
// pull: the server deletes it then, so tenants that stopped sending cost
// nothing. Workers create it again with the next job. It outlasts any
// job's deliveries by far, so a consumer is never deleted under a job
// that still runs.
const QueueIdleTimeout = time.Hour

// queueConsumer is the consumer of one tenant's jobs of one priority.
func queueConsumer(c Config, tenant, priority string) jetstream.ConsumerConfig {
	filter := c.Names.Jobs(tenant)
	if priority != "normal" {
		filter = c.Names.PriorityJobs(tenant, priority)
	}
	return jetstream.ConsumerConfig{
		Durable:           c.Names.QueueConsumer(tenant, priority),
		Description:       "chatfleet workers: tenant " + tenant + ", priority " + priority,
		FilterSubject:     filter,
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           c.AckWait,
		MaxDeliver:        c.MaxDeliver,
		MaxAckPending:     c.MaxAckPending,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: QueueIdleTimeout,
	}
}

// Queue returns the consumer of tenant's jobs of priority ("high",
// "normal" or "low"), creating it if it does not exist. One with another
// configuration is a *MismatchError.
func (t *Topology) Queue(ctx context.Context, tenant, priority string) (jetstream.Consumer, error) {
	return ensureConsumer(ctx, t.Jobs, queueConsumer(t.Config, tenant, priority))
}

// QueueOf returns the consumer name and filter of the queue a job
// published on subject waits in; ok is false for a subject that is no
// queue's.
func (t *Topology) QueueOf(subject string) (consumer string, ok bool) {
	tenant, priority, err := t.Config.Names.ParseQueue(subject)
	if err != nil {
		return "", false
	}
	return t.Config.Names.QueueConsumer(tenant, priority), true
}

// Queues reads the state of every queue consumer of the jobs stream.
func (t *Topology) Queues(ctx context.Context) ([]*jetstream.ConsumerInfo, error) {
	var out []*jetstream.ConsumerInfo
	list := t.Jobs.ListConsumers(ctx)
	prefix := t.Config.Names.QueueConsumerPrefix()
	for info := range list.Info() {
		if strings.HasPrefix(info.Name, prefix) {
			out = append(out, info)
		}
	}
	if err := list.Err(); err != nil {
		return nil, fmt.Errorf("topology: list the consumers of stream %s: %w", t.Config.Names.JobsStream(), err)
	}
	return out, nil
}

// QueueTotals reads the jobs stream of names and sums the state of its
// queue consumers as one shared consumer would report it: NumAckPending,
// NumRedelivered, NumWaiting and the delivered and acked counts are the
// sums; NumPending is every job in the stream not being worked on (jobs
// of a queue without a consumer yet included). For status, tests and
// operators; the maintainer reads each consumer.
func QueueTotals(ctx context.Context, js jetstream.JetStream, names subjects.Names) (*jetstream.ConsumerInfo, error) {
	s, err := js.Stream(ctx, names.JobsStream())
	if err != nil {
		return nil, fmt.Errorf("topology: stream %s: %w", names.JobsStream(), err)
	}
	t := &Topology{Config: Config{Names: names}, Jobs: s}
	infos, err := t.Queues(ctx)
	if err != nil {
		return nil, err
	}
	sum := &jetstream.ConsumerInfo{Stream: names.JobsStream(), Name: names.QueueConsumerPrefix() + "*"}
	for _, info := range infos {
		sum.NumAckPending += info.NumAckPending
		sum.NumRedelivered += info.NumRedelivered
		sum.NumWaiting += info.NumWaiting
		sum.Delivered.Consumer += info.Delivered.Consumer
		sum.AckFloor.Consumer += info.AckFloor.Consumer
	}
	// The stream after the consumers: a job acked in between is then
	// missing from both, not counted as waiting.
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("topology: stream %s: %w", names.JobsStream(), err)
	}
	msgs := info.State.Msgs
	if held := uint64(sum.NumAckPending); msgs > held {
		sum.NumPending = msgs - held
	}
	return sum, nil
}

// checkQueues compares an existing queue consumer, if there is one, with
// this process's configuration: they are created as jobs arrive, so a
// process configured with another ack wait or max deliver would otherwise
// only find out at its first pull.
func (t *Topology) checkQueues(ctx context.Context) error {
	infos, err := t.Queues(ctx)
	if err != nil {
		return err
	}
	for _, info := range infos {
		tenant, priority, err := t.Config.Names.ParseQueue(info.Config.FilterSubject)
		if err != nil || info.Name != t.Config.Names.QueueConsumer(tenant, priority) {
			continue // not one chatfleet made
		}
		return consumerDiffs(info.Config, queueConsumer(t.Config, tenant, priority))
	}
	return nil
}
