package manager

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
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
// requests as their cancels arrive. It returns after the initial values;
// ctx bounds only that wait: the watch lives until Stop.
func (m *Manager) watchCancels(ctx context.Context) error {
	w, err := m.topo.Cancels.WatchAll(m.life)
	if err != nil {
		return fmt.Errorf("manager: watch cancels: %w", err)
	}
	m.watcher = w
	// Read up to the end-of-initial-values marker (a nil entry) here, so
	// Start returns only once every existing cancel is known.
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("manager: cancel watcher closed during start")
			}
			if e == nil {
				m.background.Add(1) // owned by the manager: Stop stops the watcher and waits
				go func() {
					defer m.background.Done()
					m.applyCancels(w)
				}()
				return nil
			}
			m.applyCancel(e)
		case <-ctx.Done():
			_ = w.Stop()
			return ctx.Err()
		}
	}
}

// applyCancels applies cancels as they arrive until the manager stops. It
// owns the watcher: after a reconnect (the server may have restarted, and
// the watch's consumer with it) it starts a new watch after the last
// revision seen, rather than wait for missed heartbeats to tell.
func (m *Manager) applyCancels(w jetstream.KeyWatcher) {
	reconnected := m.nc.StatusChanged(nats.CONNECTED)
	defer m.nc.RemoveStatusListener(reconnected)
	defer func() { _ = w.Stop() }()
	var last uint64
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e != nil {
				last = max(last, e.Revision())
				m.applyCancel(e)
			}
		case <-reconnected:
			nw, err := m.topo.Cancels.WatchAll(m.life, jetstream.ResumeFromRevision(last+1))
			if err != nil {
				m.cfg.Logger.Warn("cannot watch cancels again after a reconnect; the old watch goes on", "err", err)
				continue
			}
			_ = w.Stop()
			w = nw
		case <-m.life.Done():
			return
		}
	}
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
