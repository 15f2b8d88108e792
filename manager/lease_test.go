package manager

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/natstest"
)

// leaseSetup returns a fresh in-flight bucket whose entries expire after
// ttl (configured as the topology configures the real one), and a context
// bounding the test's calls. Its bound starts when the test does, and a
// test's parallel subtests queue for a slot behind the rest of the
// package first: it must outlast that wait on a busy machine.
func leaseSetup(t *testing.T, ttl time.Duration) (jetstream.KeyValue, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	t.Cleanup(cancel)
	s := natstest.RunServer(t)
	_, js := natstest.JetStream(t, s.ClientURL())
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "leases", TTL: ttl, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	return kv, ctx
}

func testLeaseValue(gen string) leaseValue {
	return leaseValue{Gen: gen, Tenant: "t", Worker: "w1", Request: "r1", Since: time.Unix(1, 0).UTC()}
}

// mustAcquire takes key for generation gen.
func mustAcquire(t *testing.T, ctx context.Context, kv jetstream.KeyValue, key, gen string, ttl time.Duration) *lease {
	t.Helper()
	l, _, err := acquireLease(ctx, kv, key, testLeaseValue(gen), ttl)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// lostProbe is a lost callback that counts its calls and signals the
// first.
type lostProbe struct {
	calls atomic.Int32
	ch    chan struct{} // one token per call, never blocking the keeper
}

func newLostProbe() *lostProbe { return &lostProbe{ch: make(chan struct{}, 8)} }

func (p *lostProbe) lost() {
	p.calls.Add(1)
	select {
	case p.ch <- struct{}{}:
	default:
	}
}

// renewalPending reports whether a renewal is scheduled: stopping the
// timer stops a pending one. Under l.mu, so a tick that is deciding has
// decided.
func renewalPending(l *lease) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.timer.Stop()
}

// revision returns key's current revision, or 0 when it has none.
func revision(t *testing.T, ctx context.Context, kv jetstream.KeyValue, key string) uint64 {
	t.Helper()
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return e.Revision()
}

// expectValue checks key holds want after a release; "" wants no value.
func expectValue(t *testing.T, ctx context.Context, kv jetstream.KeyValue, key, want string) {
	t.Helper()
	e, err := kv.Get(ctx, key)
	switch {
	case want == "" && !errors.Is(err, jetstream.ErrKeyNotFound):
		t.Errorf("key %s after release: %v, want none", key, err)
	case want != "" && (err != nil || string(e.Value()) != want):
		t.Errorf("key %s after release: %v; want %s kept", key, err, want)
	}
}

// TestAcquireLease: the first leader of a key without history gets it
// fresh; while it is held nobody else gets it; after a release the key
// has a delete marker, and the next leader gets it, not fresh.
func TestAcquireLease(t *testing.T) {
	t.Parallel()
	const ttl = 10 * time.Second
	kv, ctx := leaseSetup(t, ttl)

	l, fresh, err := acquireLease(ctx, kv, "k", testLeaseValue("g1"), ttl)
	if err != nil || !fresh {
		t.Fatalf("first acquire: fresh %v, err %v", fresh, err)
	}
	holder, err := readLease(ctx, kv, "k")
	if err != nil || holder != testLeaseValue("g1") {
		t.Fatalf("holder %+v, %v; want %+v", holder, err, testLeaseValue("g1"))
	}
	if _, _, err := acquireLease(ctx, kv, "k", testLeaseValue("g2"), ttl); !errors.Is(err, jetstream.ErrKeyExists) {
		t.Fatalf("acquire of a held key: %v, want ErrKeyExists", err)
	}
	if err := l.release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := readLease(ctx, kv, "k"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("after release: %v, want ErrKeyNotFound", err)
	}
	l2, fresh, err := acquireLease(ctx, kv, "k", testLeaseValue("g2"), ttl)
	if err != nil || fresh {
		t.Fatalf("acquire after a release: fresh %v, err %v; want not fresh", fresh, err)
	}
	if err := l2.release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestLeaseKeepRenewsPastTTL: a kept lease outlives its TTL: a key written
// after its first renewal, and not kept, expires, and the kept key is
// still there — renewed again since — with our value. Nothing is lost.
func TestLeaseKeepRenewsPastTTL(t *testing.T) {
	t.Parallel()
	// 2s, not the minimum 1s: a renewal round trip on a loaded machine
	// gets more than half a second of slack.
	const ttl = 2 * time.Second
	kv, ctx := leaseSetup(t, ttl)
	l := mustAcquire(t, ctx, kv, "kept", "g1", ttl)
	first := revision(t, ctx, kv, "kept")
	w, err := kv.Watch(ctx, "kept", jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	probe := newLostProbe()
	l.keep(probe.lost)
	defer l.stopKeeping()

	var renewed uint64
	for renewed == 0 {
		select {
		case e := <-w.Updates():
			if e != nil && e.Revision() > first {
				renewed = e.Revision()
			}
		case <-probe.ch:
			t.Fatal("lease lost while the keeper renews it")
		case <-ctx.Done():
			t.Fatal("never renewed")
		}
	}
	if _, err := kv.Create(ctx, "unkept", []byte("x")); err != nil {
		t.Fatal(err)
	}
	// The server expires messages oldest first and sends nothing to
	// watch: poll, as a fallback. Once the unkept key is gone, so is the
	// kept key's first renewal.
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for revision(t, ctx, kv, "unkept") != 0 {
		select {
		case <-probe.ch:
			t.Fatal("lease lost while the keeper renews it")
		case <-ctx.Done():
			t.Fatal("the unkept key never expired")
		case <-poll.C:
		}
	}

	e, err := kv.Get(ctx, "kept")
	if err != nil {
		t.Fatalf("kept key after its TTL: %v", err)
	}
	if string(e.Value()) != string(l.value) || e.Revision() <= renewed {
		t.Errorf("kept key: revision %d (first renewed to %d), value %s", e.Revision(), renewed, e.Value())
	}
	if l.isLost() || probe.calls.Load() != 0 {
		t.Errorf("lost %v after %d lost calls", l.isLost(), probe.calls.Load())
	}
	if err := l.release(ctx); err != nil {
		t.Fatal(err)
	}
	if revision(t, ctx, kv, "kept") != 0 {
		t.Error("released key still there")
	}
}

// TestLeaseLostWhenRenewalRefused: once another writer overwrote, deleted
// or purged the key, the next renewal is refused: lost is called exactly
// once, no renewal is scheduled after it, and release leaves the key as
// the other writer left it.
func TestLeaseLostWhenRenewalRefused(t *testing.T) {
	t.Parallel()
	// A TTL long enough that neither the keeper's timer nor its deadline
	// comes within the test: the test ticks by hand, so the lease can only
	// be lost by the refusal itself.
	const ttl = time.Hour
	kv, ctx := leaseSetup(t, ttl)
	tests := []struct {
		name      string
		interfere func(key string) error
		left      string // the key's value afterwards; "" for none
	}{
		{"overwritten", func(key string) error { _, err := kv.Put(ctx, key, []byte("usurper")); return err }, "usurper"},
		{"deleted", func(key string) error { return kv.Delete(ctx, key) }, ""},
		{"purged", func(key string) error { return kv.Purge(ctx, key) }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := mustAcquire(t, ctx, kv, tt.name, "g-"+tt.name, ttl)
			probe := newLostProbe()
			l.keep(probe.lost)
			defer l.stopKeeping()
			if err := tt.interfere(tt.name); err != nil {
				t.Fatal(err)
			}
			renewalPending(l) // as when the keeper's timer fires: it is not armed while tick runs
			l.tick()          // the renewal that finds the key changed
			select {
			case <-probe.ch:
			default:
				t.Fatal("the refused renewal did not lose the lease")
			}
			if renewalPending(l) {
				t.Error("a renewal is scheduled after the lease was lost")
			}
			if n := probe.calls.Load(); n != 1 || !l.isLost() {
				t.Errorf("lost called %d times, isLost %v; want once, true", n, l.isLost())
			}
			if err := l.release(ctx); err != nil {
				t.Errorf("release of a lost lease: %v", err)
			}
			expectValue(t, ctx, kv, tt.name, tt.left)
			if n := probe.calls.Load(); n != 1 {
				t.Errorf("lost called %d times after release", n)
			}
		})
	}
}

// TestLeaseRenew: one renewal against each state the key can be in. An
// update that succeeded but whose reply was lost moved the revision with
// our own value: the renewal adopts that revision. Another writer's value,
// or no value at all, refuses it.
func TestLeaseRenew(t *testing.T) {
	t.Parallel()
	const ttl = 10 * time.Second
	kv, ctx := leaseSetup(t, ttl)
	tests := []struct {
		name string
		// before changes the key behind the lease; it returns the
		// revision the lease must hold after the renewal (0: not checked).
		before func(l *lease) (uint64, error)
		want   error
	}{
		{"untouched", func(l *lease) (uint64, error) { return 0, nil }, nil},
		{"lost ack", func(l *lease) (uint64, error) { return kv.Update(ctx, l.key, l.value, l.rev) }, nil},
		{"overwritten", func(l *lease) (uint64, error) {
			_, err := kv.Put(ctx, l.key, []byte(`{"gen":"other"}`))
			return 0, err
		}, jetstream.ErrKeyRevisionMismatch},
		{"deleted", func(l *lease) (uint64, error) { return 0, kv.Delete(ctx, l.key) }, jetstream.ErrKeyNotFound},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := mustAcquire(t, ctx, kv, "renew-"+string(rune('a'+i)), "g", ttl)
			wantRev, err := tt.before(l)
			if err != nil {
				t.Fatal(err)
			}
			err = l.renew(time.Now().Add(30 * time.Second))
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("renew: %v, want %v", err, tt.want)
			}
			if tt.want != nil {
				return
			}
			// Revisions count across the bucket (the subtests share it):
			// the lease holds the key's revision, a new one (or the one a
			// lost ack left).
			if got := revision(t, ctx, kv, l.key); l.rev != got || (wantRev != 0 && got != wantRev) {
				t.Errorf("after renew: lease at revision %d, key at %d; want %d", l.rev, got, wantRev)
			}
			// The next renewal goes on from the revision taken.
			before := l.rev
			if err := l.renew(time.Now().Add(30 * time.Second)); err != nil || l.rev <= before || l.rev != revision(t, ctx, kv, l.key) {
				t.Errorf("second renew: %v, revision %d after %d", err, l.rev, before)
			}
		})
	}
}

// TestLeaseKeepAdoptsAfterLostAck: the keeper itself survives a lost
// ack: it adopts the revision and goes on renewing (the key is updated
// again, with our value), and never calls lost.
func TestLeaseKeepAdoptsAfterLostAck(t *testing.T) {
	t.Parallel()
	const ttl = time.Second
	kv, ctx := leaseSetup(t, ttl)
	l := mustAcquire(t, ctx, kv, "k", "g1", ttl)
	adopted, err := kv.Update(ctx, "k", l.value, l.rev) // the update whose reply was lost
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.Watch(ctx, "k", jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	probe := newLostProbe()
	l.keep(probe.lost)
	defer l.stopKeeping()

	for renewed := false; !renewed; {
		select {
		case e := <-w.Updates():
			if e == nil {
				continue
			}
			if string(e.Value()) != string(l.value) {
				t.Fatalf("key overwritten with %s", e.Value())
			}
			renewed = e.Revision() > adopted
		case <-probe.ch:
			t.Fatal("lease lost after an update whose reply was lost")
		case <-ctx.Done():
			t.Fatal("no renewal after the adopted revision")
		}
	}
	l.stopKeeping()
	if l.isLost() || probe.calls.Load() != 0 {
		t.Errorf("lost %v, %d lost calls", l.isLost(), probe.calls.Load())
	}
	if err := l.release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestLeaseRelease: release deletes the key only while it is ours — also
// after an update whose reply was lost — and leaves another writer's
// value alone.
func TestLeaseRelease(t *testing.T) {
	t.Parallel()
	const ttl = 10 * time.Second
	kv, ctx := leaseSetup(t, ttl)
	other, _ := json.Marshal(testLeaseValue("other"))
	tests := []struct {
		name    string
		before  func(l *lease) error
		wantErr error
		left    string // the key's value afterwards; "" for none
	}{
		{"ours", func(*lease) error { return nil }, nil, ""},
		{"lost ack", func(l *lease) error { _, err := kv.Update(ctx, l.key, l.value, l.rev); return err }, nil, ""},
		{"taken", func(l *lease) error { _, err := kv.Put(ctx, l.key, other); return err }, jetstream.ErrKeyRevisionMismatch, string(other)},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			key := "release-" + string(rune('a'+i))
			l := mustAcquire(t, ctx, kv, key, "g", ttl)
			if err := tt.before(l); err != nil {
				t.Fatal(err)
			}
			err := l.release(ctx)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("release: %v, want %v", err, tt.wantErr)
			}
			expectValue(t, ctx, kv, key, tt.left)
		})
	}
}

// TestLeaseStopKeeping: stopKeeping is safe without keep and twice, and
// once it returned, a renewal that fires anyway does nothing.
func TestLeaseStopKeeping(t *testing.T) {
	t.Parallel()
	const ttl = 10 * time.Second
	kv, ctx := leaseSetup(t, ttl)

	t.Run("without keep", func(t *testing.T) {
		l := mustAcquire(t, ctx, kv, "unkept", "g1", ttl)
		l.stopKeeping()
		l.stopKeeping()
		if err := l.release(ctx); err != nil {
			t.Fatal(err)
		}
		if revision(t, ctx, kv, "unkept") != 0 {
			t.Error("key kept after release")
		}
	})

	t.Run("twice", func(t *testing.T) {
		l := mustAcquire(t, ctx, kv, "kept", "g2", ttl)
		probe := newLostProbe()
		l.keep(probe.lost)
		l.stopKeeping()
		l.stopKeeping()
		rev := revision(t, ctx, kv, "kept")
		l.tick() // a timer that fired as stopKeeping ran
		if got := revision(t, ctx, kv, "kept"); got != rev || l.rev != rev {
			t.Errorf("a tick after stopKeeping renewed: key at %d, lease at %d, was %d", got, l.rev, rev)
		}
		if probe.calls.Load() != 0 {
			t.Error("lost called after stopKeeping")
		}
		if err := l.release(ctx); err != nil {
			t.Fatal(err)
		}
		if revision(t, ctx, kv, "kept") != 0 {
			t.Error("key kept after release")
		}
	})
}
