package manager

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

// queueState is one reading of every queue consumer (one per tenant and
// priority, topology.Queue) for the maintainer. Each consumer delivers its
// own subject's jobs in stream order, so a job is still queued exactly
// when its stream sequence is above its consumer's delivered sequence, or
// when its queue has no consumer yet.
//
// The stream is read first: lastSeq is the last job stored before the
// consumers were read, so their state tells of every job up to it. A job
// stored later may have been pulled since, unknown to this reading: it
// waits for the next scan.
type queueState struct {
	byName  map[string]*jetstream.ConsumerInfo
	lastSeq uint64 // the stream's last sequence, read before the consumers
	msgs    uint64 // jobs in the stream then
	m       *Manager
}

func (m *Manager) readQueues(ctx context.Context) (queueState, error) {
	stream, err := m.topo.Jobs.Info(ctx)
	if err != nil {
		return queueState{}, err
	}
	infos, err := m.topo.Queues(ctx)
	if err != nil {
		return queueState{}, err
	}
	s := queueState{byName: make(map[string]*jetstream.ConsumerInfo, len(infos)), m: m,
		lastSeq: stream.State.LastSeq, msgs: stream.State.Msgs}
	for _, info := range infos {
		s.byName[info.Name] = info
	}
	return s, nil
}

// consumerOf is the state of the consumer of subject's queue; nil when it
// has none (yet, or any more).
func (s queueState) consumerOf(subject string) *jetstream.ConsumerInfo {
	name, ok := s.m.topo.QueueOf(subject)
	if !ok {
		return nil
	}
	return s.byName[name]
}

// pulled reports whether the job at seq on subject was delivered at least
// once.
func (s queueState) pulled(subject string, seq uint64) bool {
	info := s.consumerOf(subject)
	return info != nil && seq <= info.Delivered.Stream
}
