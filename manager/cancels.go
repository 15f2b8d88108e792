package manager

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/chatfleet/chatfleet/internal/kvmirror"
	"github.com/nats-io/nats.go/jetstream"
)

// cancelSet remembers cancel requests, by tenant.id, so a job cancelled
// while queued ends at once when pulled. The janitor forgets entries older
// than the cancel bucket's TTL.
type cancelSet struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

func newCancelSet() *cancelSet { return &cancelSet{seen: map[string]time.Time{}} }

func (s *cancelSet) add(key string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen[key] = at
}

func (s *cancelSet) has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.seen[key]
	return ok
}

// purge forgets cancels recorded before cutoff.
func (s *cancelSet) purge(cutoff time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, at := range s.seen {
		if at.Before(cutoff) {
			delete(s.seen, k)
		}
	}
}

// watchCancels mirrors the cancel bucket into memory and cancels active
// requests as their cancels arrive. It returns after the cancels stored so
// far are known; ctx bounds only that wait: the mirror lives until Stop.
func (m *Manager) watchCancels(ctx context.Context) error {
	mirror, err := kvmirror.Start(ctx, m.nc, m.topo.Cancels, ">", m.cfg.Logger, m.applyCancel)
	if err != nil {
		return fmt.Errorf("manager: cancels: %w", err)
	}
	m.cancelMirror = mirror
	return nil
}

func (m *Manager) applyCancel(e jetstream.KeyValueEntry) {
	if e.Operation() != jetstream.KeyValuePut {
		return
	}
	m.cancels.add(e.Key(), e.Created())
	// Looked up after add: a request registered after this lookup finds
	// the cancel in the set (Handle registers, then checks the set).
	r := m.requests.get(e.Key())
	m.cfg.Logger.Debug("cancel received", "key", e.Key(), "active", r != nil)
	if r != nil {
		r.cancel(errCancelled)
	}
}
