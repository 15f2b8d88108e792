package manager

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Priorities across workers. Each worker's acquirer serves its own queue by
// priority (fleetShares.next); across workers, each acquirer advertises the
// best (aged) priority rank it has waiting, under
// _waiting.<scope>.<worker> in the in-flight bucket — the scope's share
// keys with _waiting for _shares, the worker's ID for the index — and
// watches the others'. It leaves a free share alone while another worker
// advertises a better rank: that worker's acquirer takes it. An
// advertisement is rewritten when its rank changes and every third of a
// TTL, deleted when nobody waits; a dead worker's expires with the
// bucket's TTL, so a share is never left unused for longer.

// rankAds is one acquirer's view of the scope's advertisements, and its
// own. Only the acquirer's goroutine uses it.
type rankAds struct {
	s       *fleetShares
	key     string // this worker's advertisement
	pattern string // matches every worker's
	others  map[string]rankAd

	mine        int
	advertised  bool
	lastWritten time.Time
}

// rankAd is another worker's advertisement as last seen.
type rankAd struct {
	rank int
	seen time.Time
}

func newRankAds(s *fleetShares) *rankAds {
	scope := "_waiting." + strings.TrimPrefix(s.pattern, "_shares.") // _waiting.upstream.<u>.*
	return &rankAds{s: s, pattern: scope, key: strings.TrimSuffix(scope, "*") + s.m.cfg.WorkerID, others: map[string]rankAd{}}
}

// note takes one update of the advertisements.
func (a *rankAds) note(e jetstream.KeyValueEntry) {
	if e.Key() == a.key {
		return
	}
	rank, err := strconv.Atoi(string(e.Value()))
	if e.Operation() != jetstream.KeyValuePut || err != nil {
		delete(a.others, e.Key())
		return
	}
	a.others[e.Key()] = rankAd{rank: rank, seen: time.Now()}
}

// better reports whether another worker advertises a rank better than
// rank, seen within ttl.
func (a *rankAds) better(rank int, ttl time.Duration) bool {
	now := time.Now()
	for k, ad := range a.others {
		switch {
		case now.Sub(ad.seen) >= ttl:
			delete(a.others, k) // expired with its worker
		case ad.rank < rank:
			return true
		}
	}
	return false
}

// publish advertises this worker's best waiting rank, when it changed or
// a third of ttl has passed, or withdraws it when nobody waits.
func (a *rankAds) publish(ttl time.Duration) {
	rank, waiting := a.s.nextRank()
	ctx, cancel := context.WithTimeout(a.s.m.hard, ttl/2)
	defer cancel()
	kv := a.s.m.topo.Inflight
	switch {
	case !waiting && a.advertised:
		a.advertised = false
		_ = kv.Delete(ctx, a.key)
	case waiting && (!a.advertised || rank != a.mine || time.Since(a.lastWritten) >= ttl/3):
		if _, err := kv.Put(ctx, a.key, []byte(strconv.Itoa(rank))); err == nil {
			a.mine, a.advertised, a.lastWritten = rank, true, time.Now()
		}
	}
}

// nextRank returns the aged rank of the waiter the next share goes to;
// false when nobody waits.
func (s *fleetShares) nextRank() (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return 0, false
	}
	return agedRank(s.queue[s.next()], time.Now()), true
}
