package llm

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzRetryAfter: whatever the Retry-After and retry-after-ms headers say
// and whatever the clock, parseRetryAfter never panics and returns a wait
// in [0, maxRetryAfter]; a whole number of milliseconds or seconds, or an
// HTTP date, is read as that wait; anything unreadable is no wait.
func FuzzRetryAfter(f *testing.F) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Unix()
	for _, s := range [][2]string{
		{"", ""}, {"", "3"}, {"", "0.5"}, {"", " 7 "}, {"", "-5"}, {"", "soon"}, {"", "1e300"}, {"", "NaN"}, {"", "Inf"},
		{"", "0x1p4"}, {"", "86400"}, {"", "86401"},
		{"", "Fri, 02 Jan 2026 03:04:12 GMT"}, {"", "Thu, 01 Jan 2026 03:04:05 GMT"}, {"", "Friday, 02-Jan-26 03:04:12 GMT"},
		{"", "Fri Jan  2 03:04:12 2026"}, {"", "Sat, 01 Jan 9999 00:00:00 GMT"},
		{"250", "3"}, {"x", "3"}, {"0", "3"}, {"-1", "3"}, {"1e20", ""}, {"inf", ""}, {"NaN", "2"}, {"1001", ""},
	} {
		f.Add(s[0], s[1], now)
	}
	f.Add("", "Fri, 02 Jan 2026 03:04:12 GMT", int64(-1<<62))
	f.Add("", "Fri, 02 Jan 2026 03:04:12 GMT", int64(1<<62))
	f.Fuzz(func(t *testing.T, ms, ra string, nowUnix int64) {
		h := http.Header{}
		if ms != "" {
			h.Set("Retry-After-Ms", ms)
		}
		if ra != "" {
			h.Set("Retry-After", ra)
		}
		now := time.Unix(nowUnix, 0)
		d := parseRetryAfter(h, now)
		if d < 0 || d > maxRetryAfter {
			t.Fatalf("ms %q, Retry-After %q: wait %v out of [0, %v]", ms, ra, d, maxRetryAfter)
		}

		near := func(want time.Duration) bool { return d >= want-time.Microsecond && d <= want+time.Microsecond }
		msValue, msErr := strconv.ParseFloat(strings.TrimSpace(ms), 64)
		if msErr == nil && msValue > 0 {
			if n, err := strconv.ParseUint(strings.TrimSpace(ms), 10, 32); err == nil && !near(min(time.Duration(n)*time.Millisecond, maxRetryAfter)) {
				t.Errorf("retry-after-ms %q read as %v", ms, d)
			}
			return // the milliseconds win
		}
		v := strings.TrimSpace(ra)
		if n, err := strconv.ParseUint(v, 10, 32); err == nil {
			if want := min(time.Duration(n)*time.Second, maxRetryAfter); d != want {
				t.Errorf("Retry-After %q read as %v, want %v", ra, d, want)
			}
			return
		}
		if _, err := strconv.ParseFloat(v, 64); err == nil {
			return // a fraction or an exponent: only the bounds are checked
		}
		if at, err := http.ParseTime(v); err == nil {
			if want := min(max(at.Sub(now), 0), maxRetryAfter); d != want {
				t.Errorf("Retry-After %q at %v read as %v, want %v", ra, now, d, want)
			}
			return
		}
		if d != 0 {
			t.Errorf("unreadable headers ms %q, Retry-After %q read as %v, want 0", ms, ra, d)
		}
	})
}
