package gateway

import "testing"

// TestEventPos: SSE ids name an event (and chunk) and, after a takeover,
// its writer; ids without a writer are the first delivery's, as every id
// was before writers were named.
func TestEventPos(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		id   string
		want eventPos
	}{
		{"12", eventPos{seq: 12, epoch: 1}},
		{"12.1", eventPos{seq: 12, k: 1, epoch: 1}},
		{"2:12", eventPos{seq: 12, epoch: 2}},
		{"3:12.2", eventPos{seq: 12, k: 2, epoch: 3}},
	} {
		got, ok := parsePos(c.id)
		if !ok || got != c.want {
			t.Errorf("parsePos(%q) = %+v, %v; want %+v", c.id, got, ok, c.want)
		}
		if got.String() != c.id {
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), c.id)
		}
	}
	for _, bad := range []string{"", "x", "0:12", "x:12", ":12", "2:", "2:x", "12.-1", "1:2:3"} {
		if p, ok := parsePos(bad); ok {
			t.Errorf("parsePos(%q) = %+v, want refused", bad, p)
		}
	}
	if (eventPos{seq: 12, epoch: 1}).String() != (eventPos{seq: 12}).String() {
		t.Error("the first delivery's ids must look as they did before epochs")
	}
}

// FuzzParsePos: an SSE id the gateway accepts names a position it writes
// back as an id that reads as the same position.
func FuzzParsePos(f *testing.F) {
	for _, s := range []string{"12", "12.1", "2:12", "3:12.2", "1:12", "0", "x", "2:", ":1", "1.-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := parsePos(s)
		if !ok {
			return
		}
		q, ok := parsePos(p.String())
		if !ok || q != p {
			t.Fatalf("parsePos(%q) = %+v, written %q, read back %+v, %v", s, p, p.String(), q, ok)
		}
	})
}
