package manager

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/protocol"
)

// kvEntry is one update of a bucket, as a watch delivers it.
type kvEntry struct {
	jetstream.KeyValueEntry
	key   string
	value []byte
	op    jetstream.KeyValueOp
}

func (e kvEntry) Key() string                     { return e.key }
func (e kvEntry) Value() []byte                   { return e.value }
func (e kvEntry) Operation() jetstream.KeyValueOp { return e.op }

// TestUpstreamViewWakesOnlyForWhatFrees: a window that grew (every
// generation writes one) is applied without waking the upstream's
// waiters; new limits, a backoff and a window's removal wake them.
func TestUpstreamViewWakesOnlyForWhatFrees(t *testing.T) {
	v := newUpstreamView(&Manager{cfg: Config{}})
	put := func(key string, x any) kvEntry {
		b, err := json.Marshal(x)
		if err != nil {
			t.Fatal(err)
		}
		return kvEntry{key: key, value: b, op: jetstream.KeyValuePut}
	}
	woke := func(e kvEntry) bool {
		_, changed := v.get("u")
		v.apply(e)
		select {
		case <-changed:
			return true
		default:
			return false
		}
	}
	now := time.Now()
	window := protocol.UpstreamWindow{V: 1}.Add(1, 100, now)
	if woke(put("u.window", window)) {
		t.Error("a window update woke the waiters")
	}
	if st, _ := v.get("u"); func() bool { r, tk := st.window.At(now); return r != 1 || tk != 100 }() {
		t.Errorf("window not applied: %+v, want %+v", st.window, window)
	}
	if !woke(put("u", protocol.UpstreamLimits{V: protocol.UpstreamVersion, MaxStreams: 2})) {
		t.Error("new limits did not wake the waiters")
	}
	if !woke(put("u.backoff", protocol.UpstreamBackoff{}.RateLimited(now, time.Second))) {
		t.Error("a backoff did not wake the waiters")
	}
	if !woke(kvEntry{key: "u.window", op: jetstream.KeyValueDelete}) {
		t.Error("a window's removal did not wake the waiters")
	}
}
