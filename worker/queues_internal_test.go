package worker

import (
	"slices"
	"testing"

	"github.com/chatfleet/chatfleet/topology"
)

func testQueues() *queues {
	return newQueues(&topology.Topology{Config: topology.Config{}.WithDefaults()}, 0)
}

// TestPlanWeights: with every priority waiting, ten single pulls go six to
// high, three to normal, one to low, and low is not last by more than ten
// pulls (no starvation); tenants of one priority alternate.
func TestPlanWeights(t *testing.T) {
	t.Parallel()
	qs := testQueues()
	for _, s := range []string{"chat.pjobs.a.low", "chat.jobs.a", "chat.jobs.b", "chat.pjobs.a.high"} {
		qs.mark(s)
	}
	var got []string
	for range 20 {
		p := qs.plan(1)
		if len(p) != 1 || p[0].n != 1 {
			t.Fatalf("plan(1) = %+v", p)
		}
		got = append(got, p[0].tenant+"/"+p[0].priority())
	}
	count := func(want string, in []string) int {
		n := 0
		for _, g := range in {
			if g == want || (want == "normal" && (g == "a/normal" || g == "b/normal")) {
				n++
			}
		}
		return n
	}
	if h, n, l := count("a/high", got[:10]), count("normal", got[:10]), count("a/low", got[:10]); h != 6 || n != 3 || l != 1 {
		t.Errorf("first ten pulls %v: high %d, normal %d, low %d; want 6, 3, 1", got[:10], h, n, l)
	}
	if a, b := count("a/normal", got), count("b/normal", got); a != 3 || b != 3 {
		t.Errorf("normal pulls %v: tenant a %d, b %d; want them alternating", got, a, b)
	}
}

// TestPlanShares: one plan shares n pulls among the queues, an inactive
// priority gives its share away, and a dropped queue gets none until it
// is marked again.
func TestPlanShares(t *testing.T) {
	t.Parallel()
	qs := testQueues()
	qs.mark("chat.jobs.a")
	if p := qs.plan(16); len(p) != 1 || p[0].n != 16 || p[0].tenant != "a" {
		t.Errorf("one queue: plan = %+v, want all 16 pulls from it", p)
	}
	qs.mark("chat.jobs.b")
	p := qs.plan(16)
	slices.SortFunc(p, func(x, y pick) int { return len(x.tenant) - len(y.tenant) + int(x.tenant[0]) - int(y.tenant[0]) })
	if len(p) != 2 || p[0].n != 8 || p[1].n != 8 {
		t.Errorf("two tenants: plan = %+v, want 8 and 8", p)
	}
	qs.drop(p[0])
	qs.drop(p[1])
	if p := qs.plan(4); len(p) != 0 {
		t.Errorf("all dropped: plan = %+v, want none", p)
	}
	qs.mark("chat.jobs.nope.x") // no queue's subject
	qs.mark("chat.pjobs.b.normal")
	if p := qs.plan(4); len(p) != 0 {
		t.Errorf("junk subjects: plan = %+v, want none", p)
	}
}

// TestAnnouncedDuringPullStaysActive: a queue announced again while a
// pull from it runs (a job stored after the pull looked) stays active when
// that pull comes back short, so the job is pulled at once, not at the
// next rescan; without a new announcement it is dropped.
func TestAnnouncedDuringPullStaysActive(t *testing.T) {
	t.Parallel()
	qs := testQueues()
	qs.mark("chat.jobs.a")
	p := qs.plan(4)
	qs.mark("chat.jobs.a") // announced while p's pull runs
	qs.drop(p[0])          // p's pull came back short
	p = qs.plan(4)
	if len(p) != 1 || p[0].tenant != "a" {
		t.Fatalf("after an announcement during the pull: plan = %+v, want queue a", p)
	}
	qs.drop(p[0])
	if p := qs.plan(4); len(p) != 0 {
		t.Errorf("after a short pull with no announcement since: plan = %+v, want none", p)
	}
}
