package manager

import (
	"math"
	"testing"
	"time"
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
