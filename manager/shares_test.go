package manager

import (
	"slices"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/protocol"
)

// TestHeldViewFree: the acquirer tries a share only below the limit, only
// one not seen renewed within the TTL, and none while as many as the limit
// look held — those above a lowered limit included.
func TestHeldViewFree(t *testing.T) {
	t.Parallel()
	const ttl = 10 * time.Second
	now := time.Now()
	fresh, stale := now, now.Add(-ttl-time.Second)
	for _, tt := range []struct {
		name  string
		view  heldView
		limit int
		want  []int // the indexes free may return; none: false
	}{
		{"empty", heldView{}, 3, []int{0, 1, 2}},
		{"some held", heldView{0: fresh, 2: fresh}, 3, []int{1}},
		{"all held", heldView{0: fresh, 1: fresh, 2: fresh}, 3, nil},
		{"one expired", heldView{0: fresh, 1: stale, 2: fresh}, 3, []int{1}},
		{"held above a lowered limit count", heldView{3: fresh, 4: fresh}, 2, nil},
		{"one above a lowered limit", heldView{4: fresh}, 2, []int{0, 1}},
	} {
		for range 20 { // free starts at a random index
			i, ok := tt.view.free(tt.limit, ttl)
			if ok != (len(tt.want) > 0) {
				t.Fatalf("%s: free = %d, %v; want one of %v", tt.name, i, ok, tt.want)
			}
			if ok && !slices.Contains(tt.want, i) {
				t.Fatalf("%s: free = %d; want one of %v", tt.name, i, tt.want)
			}
		}
	}
	if d := (heldView{0: now.Add(-ttl + time.Second)}).nextExpiry(ttl); d > time.Second || d < 900*time.Millisecond {
		t.Errorf("nextExpiry = %s, want about 1s: when the key seen 9s ago may expire", d)
	}
	if d := (heldView{}).nextExpiry(ttl); d != ttl/3 {
		t.Errorf("nextExpiry of an empty view = %s, want a third of the TTL", d)
	}
}

// TestSharesServeOrder: waiters for a share are served by priority, then
// round-robin between tenants (a tenant served least recently first), then
// in arrival order; one tenant's burst does not hold another's job back.
func TestSharesServeOrder(t *testing.T) {
	t.Parallel()
	now := time.Now()
	w := func(tenant, id string, p protocol.Priority) *shareWaiter {
		return &shareWaiter{who: leaseValue{Tenant: tenant, Request: id}, rank: p.Rank(), since: now}
	}
	s := &fleetShares{queue: []*shareWaiter{
		w("a", "a1", protocol.PriorityLow),
		w("a", "a2", ""), w("a", "a3", ""), w("a", "a4", ""),
		w("b", "b1", ""), w("b", "b2", ""),
		w("c", "c1", protocol.PriorityHigh),
	}}
	var got []string
	for len(s.queue) > 0 {
		i := s.next()
		got = append(got, s.queue[i].who.Request)
		s.noteServed(s.queue[i].who.Tenant)
		s.queue = append(s.queue[:i], s.queue[i+1:]...)
	}
	want := []string{"c1", "a2", "b1", "a3", "b2", "a4", "a1"}
	if !slices.Equal(got, want) {
		t.Errorf("served %v, want %v", got, want)
	}

	// A low-priority job that waited twice the aging period goes before
	// a normal one that just arrived; it ties with a high one that did,
	// and arrival order decides.
	s.served = nil
	s.queue = []*shareWaiter{w("a", "fresh-normal", ""), w("b", "fresh-high", protocol.PriorityHigh), w("c", "old-low", protocol.PriorityLow)}
	s.queue[2].since = now.Add(-2*shareAging - time.Second)
	got = nil
	for len(s.queue) > 0 {
		i := s.next()
		got = append(got, s.queue[i].who.Request)
		s.queue = append(s.queue[:i], s.queue[i+1:]...)
	}
	if want := []string{"fresh-high", "old-low", "fresh-normal"}; !slices.Equal(got, want) {
		t.Errorf("with aging: served %v, want %v", got, want)
	}
}
