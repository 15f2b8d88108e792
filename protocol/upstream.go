package protocol

import (
	"encoding/json"
	"fmt"
	"time"
)

// UpstreamVersion is the format of the upstreams bucket's entries this
// package writes. A later version only adds fields.
const UpstreamVersion = 1

// DefaultUpstream names the upstream CHATFLEET_LLM_BASE_URL configures.
const DefaultUpstream = "default"

// Reasons of a waiting stage at the fleet's capacity: the job's generation
// waits for the upstream's fleet-wide limits, whichever worker runs it.
const (
	// ReasonFleetStreams: the upstream has its limit of concurrent
	// streams across the fleet (max_streams).
	ReasonFleetStreams = "fleet_streams"
	// ReasonFleetRPM: the fleet has sent the upstream its requests for
	// this minute (requests_per_minute).
	ReasonFleetRPM = "fleet_rpm"
	// ReasonFleetTPM: the fleet's generations used the upstream's tokens
	// for this minute (tokens_per_minute).
	ReasonFleetTPM = "fleet_tpm"
	// ReasonUpstreamBackoff: the upstream answered 429 (rate limited) to a
	// worker of the fleet, and every worker holds its new calls back until
	// the Retry-After it gave (or a second) has passed.
	ReasonUpstreamBackoff = "upstream_backoff"
)

// UpstreamLimits are an upstream's fleet-wide limits: the JSON of its
// entry in the upstreams bucket, under the upstream's name. Every worker
// watches the bucket, so they cannot disagree; a worker uses its
// environment's values (CHATFLEET_FLEET_*) only while the bucket holds no
// entry for the upstream. A zero limit means none.
type UpstreamLimits struct {
	// V is the format version, UpstreamVersion.
	V int `json:"v"`
	// MaxStreams caps the upstream streams open at once, across the fleet.
	MaxStreams int `json:"max_streams,omitempty"`
	// RequestsPerMinute caps the upstream calls the fleet starts in one UTC
	// calendar minute.
	RequestsPerMinute int64 `json:"requests_per_minute,omitempty"`
	// TokensPerMinute caps the tokens the upstream reported for the
	// fleet's generations in one UTC calendar minute.
	TokensPerMinute int64 `json:"tokens_per_minute,omitempty"`
	// Updated is when the entry was last written.
	Updated time.Time `json:"updated,omitzero"`
}

// Validate checks an upstream entry: known version, no negative limit.
func (u *UpstreamLimits) Validate() error {
	switch {
	case u.V < 1:
		return fmt.Errorf("protocol: upstream entry version %d; want %d or later", u.V, UpstreamVersion)
	case u.MaxStreams < 0 || u.RequestsPerMinute < 0 || u.TokensPerMinute < 0:
		return fmt.Errorf("protocol: an upstream's limits must not be negative")
	}
	return nil
}

// DecodeUpstreamLimits decodes and validates an upstream entry.
func DecodeUpstreamLimits(b []byte) (UpstreamLimits, error) {
	var u UpstreamLimits
	if err := json.Unmarshal(b, &u); err != nil {
		return UpstreamLimits{}, fmt.Errorf("protocol: upstream entry: %w", err)
	}
	return u, u.Validate()
}

// UpstreamWindow counts the calls the fleet started and the tokens its
// generations used at an upstream in the current UTC calendar minute: the
// JSON of its <upstream>.window entry. Workers change it with
// compare-and-swap: a call is counted before it starts, tokens when the
// generation ends.
type UpstreamWindow struct {
	// V is the format version, UpstreamVersion.
	V int `json:"v"`
	// Minute is the start of the minute counted (UTC).
	Minute time.Time `json:"minute"`
	// Requests were started in that minute.
	Requests int64 `json:"requests"`
	// Tokens were used in that minute.
	Tokens int64 `json:"tokens"`
}

// At returns the requests and tokens counted in the minute holding now: 0
// for a minute the entry's has been replaced by.
func (w UpstreamWindow) At(now time.Time) (requests, tokens int64) {
	if w.Minute.Equal(now.UTC().Truncate(time.Minute)) {
		return w.Requests, w.Tokens
	}
	return 0, 0
}

// Add returns w with requests and tokens added at now, in the minute
// holding now.
func (w UpstreamWindow) Add(requests, tokens int64, now time.Time) UpstreamWindow {
	r, t := w.At(now)
	return UpstreamWindow{V: UpstreamVersion, Minute: now.UTC().Truncate(time.Minute), Requests: r + requests, Tokens: t + tokens}
}

// UpstreamBackoff is the fleet's answer to an upstream's 429s: the JSON of
// its <upstream>.backoff entry. Until holds every worker's new calls back;
// Factor scales the upstream's limits down (multiplicative decrease: each
// 429 halves it, at most once a second) and recovers additively
// (Recovered).
type UpstreamBackoff struct {
	// V is the format version, UpstreamVersion.
	V int `json:"v"`
	// Until is when new calls may start again.
	Until time.Time `json:"until"`
	// Factor, in (0, 1], scales the upstream's max_streams and
	// requests_per_minute at Decreased.
	Factor float64 `json:"factor"`
	// Decreased is when Factor was last halved.
	Decreased time.Time `json:"decreased"`
}

// Backoff parameters: the additive increase of the factor, its period, the
// least factor, and the shortest hold after a 429 without Retry-After.
const (
	BackoffStep    = 0.1
	BackoffPeriod  = 5 * time.Second
	BackoffFloor   = 0.05
	BackoffMinHold = time.Second
)

// Recovered returns the factor at now: Factor plus BackoffStep for every
// whole BackoffPeriod since Decreased, at most 1. A zero entry is 1.
func (b UpstreamBackoff) Recovered(now time.Time) float64 {
	if b.Factor <= 0 || b.Decreased.IsZero() {
		return 1
	}
	steps := 0.0
	if d := now.Sub(b.Decreased); d > 0 {
		steps = float64(d / BackoffPeriod)
	}
	return min(1, b.Factor+steps*BackoffStep)
}

// RateLimited returns b after a 429 at now that asked to wait retryAfter
// (0: none given): Until moves to now + max(retryAfter, BackoffMinHold)
// unless it is later already, and the recovered factor halves, unless it
// was halved less than a second ago (one burst of 429s is one decrease).
func (b UpstreamBackoff) RateLimited(now time.Time, retryAfter time.Duration) UpstreamBackoff {
	out := UpstreamBackoff{V: UpstreamVersion, Until: b.Until, Factor: b.Recovered(now), Decreased: b.Decreased}
	if until := now.Add(max(retryAfter, BackoffMinHold)); until.After(out.Until) {
		out.Until = until
	}
	if now.Sub(b.Decreased) >= time.Second || b.Decreased.IsZero() {
		out.Factor, out.Decreased = max(BackoffFloor, out.Factor/2), now
	}
	return out
}

// Scale returns limit scaled by factor, at least 1; 0 (no limit) stays 0.
func Scale[T int | int64](limit T, factor float64) T {
	if limit <= 0 {
		return 0
	}
	return max(1, T(float64(limit)*factor))
}
