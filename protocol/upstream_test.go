package protocol

import (
	"testing"
	"time"
)

// TestUpstreamBackoff: a 429 holds calls back for its Retry-After (at
// least a second) and halves the factor, once per second of 429s; the
// factor recovers by a step every period, up to 1; limits scale with it,
// never below 1.
func TestUpstreamBackoff(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	var b UpstreamBackoff
	if b.Recovered(t0) != 1 {
		t.Fatalf("a zero backoff's factor is %v, want 1", b.Recovered(t0))
	}
	b = b.RateLimited(t0, 3*time.Second)
	if !b.Until.Equal(t0.Add(3*time.Second)) || b.Factor != 0.5 {
		t.Errorf("after a 429: %+v", b)
	}
	b = b.RateLimited(t0.Add(100*time.Millisecond), 0) // the same burst
	if !b.Until.Equal(t0.Add(3*time.Second)) || b.Factor != 0.5 {
		t.Errorf("after a second 429 within a second: %+v", b)
	}
	b = b.RateLimited(t0.Add(2*time.Second), 0)
	if !b.Until.Equal(t0.Add(3*time.Second)) || b.Factor != 0.25 || !b.Decreased.Equal(t0.Add(2*time.Second)) {
		t.Errorf("after a 429 two seconds later: %+v", b)
	}
	for _, tc := range []struct {
		after time.Duration
		want  float64
	}{{0, 0.25}, {BackoffPeriod - time.Millisecond, 0.25}, {BackoffPeriod, 0.35}, {3 * BackoffPeriod, 0.55}, {time.Hour, 1}} {
		if got := b.Recovered(b.Decreased.Add(tc.after)); got < tc.want-1e-9 || got > tc.want+1e-9 {
			t.Errorf("factor %s after the decrease: %v, want %v", tc.after, got, tc.want)
		}
	}
	for _, tc := range []struct {
		limit  int
		factor float64
		want   int
	}{{0, 0.5, 0}, {10, 0.25, 2}, {3, 0.05, 1}, {8, 1, 8}} {
		if got := Scale(tc.limit, tc.factor); got != tc.want {
			t.Errorf("Scale(%d, %v) = %d, want %d", tc.limit, tc.factor, got, tc.want)
		}
	}
	for i := 0; i < 20; i++ {
		b = b.RateLimited(b.Decreased.Add(time.Second), 0)
	}
	if b.Factor != BackoffFloor {
		t.Errorf("after many 429s the factor is %v, want the floor %v", b.Factor, BackoffFloor)
	}
}

// FuzzDecodeUpstreamLimits: any bucket entry either decodes into valid
// limits or is refused; nothing panics.
func FuzzDecodeUpstreamLimits(f *testing.F) {
	for _, seed := range []string{`{"v":1,"max_streams":3}`, `{"v":1,"requests_per_minute":-1}`, `{"v":0}`, `[]`, `{"v":1,"tokens_per_minute":1e99}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := DecodeUpstreamLimits(b)
		if err == nil && (u.V < 1 || u.MaxStreams < 0 || u.RequestsPerMinute < 0 || u.TokensPerMinute < 0) {
			t.Errorf("accepted invalid limits %+v from %q", u, b)
		}
	})
}
