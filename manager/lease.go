package manager

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// leaseValue is what the in-flight bucket holds for a key: who leads its
// generation, and where the generation's events go.
type leaseValue struct {
	Gen     string    `json:"gen"`     // generation ID (its subject is <prefix>.gen.<tenant>.<gen>)
	Tenant  string    `json:"tenant"`  // tenant of the key
	Worker  string    `json:"worker"`  // leading worker (control subject <prefix>.ctl.<worker>)
	Request string    `json:"request"` // the leader's request ID (its reply subject)
	Since   time.Time `json:"since"`
	Trace   string    `json:"trace,omitempty"` // W3C traceparent of the leader's job span
}

// lease is a held leader lease. The bucket's TTL expires it unless the
// keeper renews it with compare-and-swap updates. The lease is lost when a
// renewal is refused, or when no renewal sent in the last 90% of the TTL
// has been confirmed: from then on the key may have expired and another
// worker may lead, so the leader must stop publishing.
type lease struct {
	kv    jetstream.KeyValue
	key   string
	value []byte // unique: it names our generation ID
	ttl   time.Duration

	sent time.Time // when Create was sent: the earliest the key can expire is sent+ttl

	mu       sync.Mutex
	rev      uint64
	lost     bool
	stopped  bool
	deadline time.Time // a renewal must be confirmed before it
	onLost   func()
	timer    *time.Timer
	renewing sync.WaitGroup
}

// acquireLease creates key; jetstream.ErrKeyExists when another holds it.
// fresh reports that the key had no history at all: no generation for it
// finished within the bucket's TTL, so none can have just been cached.
func acquireLease(ctx context.Context, kv jetstream.KeyValue, key string, v leaseValue, ttl time.Duration) (l *lease, fresh bool, err error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, false, err
	}
	sent := time.Now()
	// Revision 0 succeeds only for a key without any message; a key with a
	// delete marker (a generation that ended moments ago) needs Create.
	rev, err := kv.Update(ctx, key, b, 0)
	fresh = err == nil
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		sent = time.Now()
		rev, err = kv.Create(ctx, key, b)
	}
	if err != nil {
		return nil, false, err
	}
	return &lease{kv: kv, key: key, value: b, ttl: ttl, sent: sent, rev: rev}, fresh, nil
}

// readLease returns the current holder of key; jetstream.ErrKeyNotFound
// when nobody holds it.
func readLease(ctx context.Context, kv jetstream.KeyValue, key string) (leaseValue, error) {
	e, err := kv.Get(ctx, key)
	if err != nil {
		return leaseValue{}, err
	}
	var v leaseValue
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return leaseValue{}, err
	}
	return v, nil
}

// keep renews the lease every third of its TTL until stopKeeping, calling
// lost once if the lease is lost. Renewals run from a timer, so a
// generation shorter than a third of the TTL never starts one.
func (l *lease) keep(lost func()) {
	// Under mu: tick reads timer, and nothing orders the timer's goroutine
	// after this assignment otherwise.
	l.mu.Lock()
	defer l.mu.Unlock()
	l.onLost = lost
	l.deadline = l.sent.Add(l.ttl * 9 / 10)
	l.timer = time.AfterFunc(l.ttl/3, l.tick)
}

// tick renews once and schedules the next renewal. Ticks never overlap:
// each schedules the next only when it is done.
func (l *lease) tick() {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return
	}
	l.renewing.Add(1) // under mu, so stopKeeping waits for this renewal
	deadline := l.deadline
	l.mu.Unlock()
	defer l.renewing.Done()

	sent := time.Now()
	err := l.renew(deadline)
	l.mu.Lock()
	defer l.mu.Unlock()
	every := l.ttl / 3
	switch {
	case l.stopped:
	case err == nil:
		l.deadline = sent.Add(l.ttl * 9 / 10)
		l.timer.Reset(every)
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyNotFound),
		!time.Now().Before(deadline):
		l.lost = true
		l.onLost()
	default:
		l.timer.Reset(min(every/4, time.Until(deadline))) // transient: retry soon, within the deadline
	}
}

// renew updates the key, bounded by deadline. A refusal because the
// revision moved is checked: if the key still holds our value (an earlier
// update that succeeded but whose answer was lost), we adopt its revision.
func (l *lease) renew(deadline time.Time) error {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	l.mu.Lock()
	rev := l.rev
	l.mu.Unlock()
	next, err := l.kv.Update(ctx, l.key, l.value, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		next, err = l.adopt(ctx)
	}
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.rev = next
	l.mu.Unlock()
	return nil
}

// adopt returns the key's current revision if it still holds our value.
func (l *lease) adopt(ctx context.Context) (uint64, error) {
	e, err := l.kv.Get(ctx, l.key)
	if err != nil {
		return 0, err
	}
	if !bytes.Equal(e.Value(), l.value) {
		return 0, jetstream.ErrKeyRevisionMismatch
	}
	return e.Revision(), nil
}

func (l *lease) isLost() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

// stopKeeping stops renewals and waits for one in flight, so the
// revision stays known. Safe to call twice, and without keep.
func (l *lease) stopKeeping() {
	l.mu.Lock()
	l.stopped = true
	timer := l.timer
	l.mu.Unlock()
	if timer != nil {
		timer.Stop()
	}
	l.renewing.Wait()
}

// release stops renewals and deletes the key if it is still ours.
func (l *lease) release(ctx context.Context) error {
	l.stopKeeping()
	l.mu.Lock()
	rev, lost := l.rev, l.lost
	l.mu.Unlock()
	if lost {
		return nil
	}
	err := l.kv.Delete(ctx, l.key, jetstream.LastRevision(rev))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		if rev, err = l.adopt(ctx); err == nil {
			err = l.kv.Delete(ctx, l.key, jetstream.LastRevision(rev))
		}
	}
	return err
}
