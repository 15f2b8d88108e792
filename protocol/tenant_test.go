package protocol

import (
	"testing"
	"time"
)

func TestTenantTokensWindows(t *testing.T) {
	t.Parallel()
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	var u TenantTokens
	u = u.Add(10, at("2026-11-30T23:58:10Z"))
	u = u.Add(5, at("2026-11-30T23:58:59.9Z"))
	if m, d := u.At(at("2026-11-30T23:58:30Z")); m != 15 || d != 15 {
		t.Errorf("same minute: %d, %d; want 15, 15", m, d)
	}
	if m, d := u.At(at("2026-11-30T23:59:00Z")); m != 0 || d != 15 {
		t.Errorf("next minute: %d, %d; want 0, 15", m, d)
	}
	u = u.Add(1, at("2026-11-30T23:59:00Z"))
	if u.MinuteTokens != 1 || u.DayTokens != 16 {
		t.Errorf("after the minute rolled over: %+v", u)
	}
	if m, d := u.At(at("2026-12-01T00:00:00Z")); m != 0 || d != 0 {
		t.Errorf("next day: %d, %d; want 0, 0", m, d)
	}
	// Another zone's clock counts the same UTC windows.
	if m, _ := u.At(at("2026-12-01T00:59:00+01:00")); m != 1 {
		t.Errorf("the same minute in another zone: %d; want 1", m)
	}
	if got := NextMinute(at("2026-11-30T23:59:30Z")); !got.Equal(at("2026-12-01T00:00:00Z")) {
		t.Errorf("NextMinute = %v", got)
	}
	if got := NextDay(at("2026-11-30T23:59:30+01:00")); !got.Equal(at("2026-12-01T00:00:00Z")) {
		t.Errorf("NextDay = %v", got)
	}
}

func TestDecodeTenant(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in string
		ok bool
	}{
		{`{"v":1,"max_inflight":3,"on_limit":"reject"}`, true},
		{`{"v":2,"max_inflight":3,"future":true}`, true}, // later versions only add fields
		{`{"max_inflight":3}`, false},
		{`{"v":1,"max_queued":-1}`, false},
		{`{"v":1,"on_limit":"drop"}`, false},
		{`not json`, false},
	} {
		if _, err := DecodeTenant([]byte(tt.in)); (err == nil) != tt.ok {
			t.Errorf("DecodeTenant(%s): %v", tt.in, err)
		}
	}
}
