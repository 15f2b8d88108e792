package manager

import (
	"math"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestQueueTimeoutRule: a job's queue_timeout_ms may shorten the fleet's
// queue timeout, never lengthen it; it applies alone when the fleet has
// none.
func TestQueueTimeoutRule(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		fleet time.Duration
		jobMS int64
		want  time.Duration
	}{
		{time.Minute, 0, time.Minute},
		{time.Minute, 500, 500 * time.Millisecond},
		{time.Minute, 3_600_000, time.Minute}, // longer: the fleet's
		{0, 0, 0},
		{-1, 0, 0},
		{0, 2000, 2 * time.Second},
		{time.Minute, math.MaxInt64, time.Minute}, // would overflow: ignored
	} {
		if got := queueTimeout(tt.fleet, tt.jobMS); got != tt.want {
			t.Errorf("queueTimeout(%s, %d) = %s, want %s", tt.fleet, tt.jobMS, got, tt.want)
		}
	}
}

// TestGaveUpRule: a job still in the stream counts as given up by the
// consumer only on the server's evidence: delivered, redeliveries
// recorded, and not pending — at or below the ack floor, or nothing
// pending at all.
func TestGaveUpRule(t *testing.T) {
	t.Parallel()
	info := func(maxDeliver int, delivered, floor uint64, ackPending, redelivered int) *jetstream.ConsumerInfo {
		return &jetstream.ConsumerInfo{Config: jetstream.ConsumerConfig{MaxDeliver: maxDeliver},
			Delivered: jetstream.SequenceInfo{Stream: delivered}, AckFloor: jetstream.SequenceInfo{Stream: floor},
			NumAckPending: ackPending, NumRedelivered: redelivered}
	}
	for _, tt := range []struct {
		name string
		seq  uint64
		info *jetstream.ConsumerInfo
		want bool
	}{
		{"below the ack floor", 3, info(5, 9, 4, 2, 1), true},
		{"nothing pending", 3, info(5, 9, 0, 0, 1), true},
		{"above the ack floor, others pending", 5, info(5, 9, 4, 2, 1), false},
		{"never delivered (queued)", 10, info(5, 9, 0, 0, 1), false},
		{"no redeliveries recorded", 3, info(5, 9, 4, 0, 0), false},
		{"unlimited deliveries", 3, info(-1, 9, 4, 0, 1), false},
	} {
		if got := gaveUp(tt.seq, tt.info); got != tt.want {
			t.Errorf("%s: gaveUp = %v, want %v", tt.name, got, tt.want)
		}
	}
}
