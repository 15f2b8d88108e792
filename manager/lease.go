package manager

import (
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
}

// lease is a held leader lease. The bucket's TTL expires it unless the
// keeper renews it with compare-and-swap updates; a renewal that fails on
// the revision, or cannot be confirmed before the TTL runs out, means the
// lease is lost and the leader must stop publishing.
type lease struct {
	kv    jetstream.KeyValue
	key   string
	value []byte
	ttl   time.Duration

	mu   sync.Mutex
	rev  uint64
	lost bool

	stopKeeper context.CancelFunc
	keeperDone chan struct{}
}

// acquireLease creates key; jetstream.ErrKeyExists when another holds it.
func acquireLease(ctx context.Context, kv jetstream.KeyValue, key string, v leaseValue, ttl time.Duration) (*lease, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	rev, err := kv.Create(ctx, key, b)
	if err != nil {
		return nil, err
	}
	return &lease{kv: kv, key: key, value: b, ttl: ttl, rev: rev}, nil
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

// keep renews the lease every third of its TTL until stopped, calling
// lost once if the lease is lost. The keeper goroutine is owned by the
// lease: stopKeeping or release stops it.
func (l *lease) keep(lost func()) {
	ctx, cancel := context.WithCancel(context.Background())
	l.stopKeeper = cancel
	l.keeperDone = make(chan struct{})
	go func() {
		defer close(l.keeperDone)
		every := l.ttl / 3
		confirmed := time.Now()
		t := time.NewTimer(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			err := l.renew(ctx)
			switch {
			case err == nil:
				confirmed = time.Now()
				t.Reset(every)
			case ctx.Err() != nil:
				return
			case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyNotFound),
				time.Since(confirmed) > l.ttl*9/10:
				l.mu.Lock()
				l.lost = true
				l.mu.Unlock()
				lost()
				return
			default:
				t.Reset(every / 4) // transient: retry soon, within the TTL
			}
		}
	}()
}

func (l *lease) renew(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, l.ttl/3)
	defer cancel()
	l.mu.Lock()
	rev := l.rev
	l.mu.Unlock()
	next, err := l.kv.Update(ctx, l.key, l.value, rev)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.rev = next
	l.mu.Unlock()
	return nil
}

// stopKeeping stops renewals and waits for the keeper. Safe to call twice.
func (l *lease) stopKeeping() {
	if l.stopKeeper != nil {
		l.stopKeeper()
		<-l.keeperDone
	}
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
	return l.kv.Delete(ctx, l.key, jetstream.LastRevision(rev))
}
