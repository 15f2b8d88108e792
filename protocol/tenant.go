package protocol

import (
	"encoding/json"
	"fmt"
	"time"
)

// TenantVersion is the format of the tenants bucket's entries this package
// writes. A later version only adds fields: a worker applies the fields it
// knows of any version.
const TenantVersion = 1

// Limits of a tenant, as a quota_exceeded error's Limit names them.
const (
	LimitMaxQueued       = "max_queued"
	LimitMaxInflight     = "max_inflight"
	LimitTokensPerMinute = "tokens_per_minute"
	LimitTokensPerDay    = "tokens_per_day"
)

// What a job does at a limit it can wait for (generations in flight,
// tokens per minute or day).
const (
	// OnLimitWait: the job waits for room, reporting progress (the
	// default).
	OnLimitWait = "wait"
	// OnLimitReject: the job ends at once with CodeQuotaExceeded and a
	// RetryAfterMS.
	OnLimitReject = "reject"
)

// Tenant is a tenant's limits and state: the JSON of its entry in the
// tenants bucket, under the tenant's name. A zero limit means none.
type Tenant struct {
	// V is the format version, TenantVersion.
	V int `json:"v"`
	// MaxQueued caps the tenant's jobs in the jobs stream (waiting or
	// running): the fleet's maintainer ends the newest waiting ones beyond
	// it with CodeQuotaExceeded. It can only lower the fleet's uniform
	// per-tenant cap, which the jobs stream enforces itself.
	MaxQueued int64 `json:"max_queued,omitempty"`
	// MaxInflight caps the tenant's generations calling the upstream at
	// once, across the fleet. Followers and cache hits do not count.
	MaxInflight int `json:"max_inflight,omitempty"`
	// TokensPerMinute caps the upstream tokens the tenant's generations
	// use in one UTC calendar minute, fleet-wide.
	TokensPerMinute int64 `json:"tokens_per_minute,omitempty"`
	// TokensPerDay caps them in one UTC calendar day.
	TokensPerDay int64 `json:"tokens_per_day,omitempty"`
	// OnLimit is OnLimitWait ("" reads as it) or OnLimitReject.
	OnLimit string `json:"on_limit,omitempty"`
	// Paused tenants' jobs wait when pulled; generations already running
	// go on.
	Paused bool `json:"paused,omitempty"`
	// Updated is when the entry was last written.
	Updated time.Time `json:"updated,omitzero"`
}

// Rejects reports whether the tenant's jobs end at a limit rather than
// wait.
func (t *Tenant) Rejects() bool { return t.OnLimit == OnLimitReject }

// Validate checks a tenant entry: known version, no negative limit, a known
// OnLimit.
func (t *Tenant) Validate() error {
	switch {
	case t.V < 1:
		return fmt.Errorf("protocol: tenant entry version %d; want %d or later", t.V, TenantVersion)
	case t.MaxQueued < 0 || t.MaxInflight < 0 || t.TokensPerMinute < 0 || t.TokensPerDay < 0:
		return fmt.Errorf("protocol: a tenant's limits must not be negative")
	case t.OnLimit != "" && t.OnLimit != OnLimitWait && t.OnLimit != OnLimitReject:
		return fmt.Errorf("protocol: on_limit %q; want %q or %q", t.OnLimit, OnLimitWait, OnLimitReject)
	}
	return nil
}

// DecodeTenant decodes and validates a tenant entry.
func DecodeTenant(b []byte) (Tenant, error) {
	var t Tenant
	if err := json.Unmarshal(b, &t); err != nil {
		return Tenant{}, fmt.Errorf("protocol: tenant entry: %w", err)
	}
	return t, t.Validate()
}

// TenantTokens counts the upstream tokens a tenant's generations used,
// fleet-wide, in the current UTC calendar minute and day: the JSON of its
// <tenant>.tokens entry in the tenants bucket. Workers add to it with
// compare-and-swap when a generation ends.
type TenantTokens struct {
	// V is the format version, TenantVersion.
	V int `json:"v"`
	// Minute is the start of the minute MinuteTokens counts (UTC).
	Minute time.Time `json:"minute"`
	// MinuteTokens were used in that minute.
	MinuteTokens int64 `json:"minute_tokens"`
	// Day is the UTC date DayTokens counts, 2006-01-02.
	Day string `json:"day"`
	// DayTokens were used on that day.
	DayTokens int64 `json:"day_tokens"`
}

// dayFormat spells TenantTokens.Day.
const dayFormat = time.DateOnly

// At returns the tokens used in the minute and the day holding now: 0 for a
// window the entry's has been replaced by.
func (u TenantTokens) At(now time.Time) (minute, day int64) {
	now = now.UTC()
	if u.Minute.Equal(now.Truncate(time.Minute)) {
		minute = u.MinuteTokens
	}
	if u.Day == now.Format(dayFormat) {
		day = u.DayTokens
	}
	return minute, day
}

// Add returns u with n tokens used at now, in the windows holding now.
func (u TenantTokens) Add(n int64, now time.Time) TenantTokens {
	minute, day := u.At(now)
	now = now.UTC()
	return TenantTokens{V: TenantVersion, Minute: now.Truncate(time.Minute), MinuteTokens: minute + n,
		Day: now.Format(dayFormat), DayTokens: day + n}
}

// NextMinute returns the start of the UTC minute after now's: when a
// tokens-per-minute window opens again.
func NextMinute(now time.Time) time.Time { return now.UTC().Truncate(time.Minute).Add(time.Minute) }

// NextDay returns the start of the UTC day after now's.
func NextDay(now time.Time) time.Time {
	y, m, d := now.UTC().Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC)
}
