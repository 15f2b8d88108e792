// Package kvmirror keeps a process's view of a key-value bucket current:
// it applies the bucket's entries as they are now, then every change, and
// carries on across reconnects.
package kvmirror

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Mirror applies a bucket's changes until Stop.
type Mirror struct {
	cancel  context.CancelFunc
	done    chan struct{}
	applied atomic.Uint64 // the revision of the last entry applied
}

// Applied returns the bucket revision applied last: every change stored
// at or before it is in the caller's view.
func (m *Mirror) Applied() uint64 { return m.applied.Load() }

// Start applies every current entry of kv whose key matches keys (">" for
// all), in revision order, and returns once they are applied: from then
// on the caller's view holds everything stored before Start. Changes
// (puts, deletes, purges) are applied afterwards, one at a time, by a
// goroutine of the mirror's own until Stop. ctx bounds only the first
// read.
func Start(ctx context.Context, nc *nats.Conn, kv jetstream.KeyValue, keys string, logger *slog.Logger, apply func(jetstream.KeyValueEntry)) (*Mirror, error) {
	life, cancel := context.WithCancel(context.Background())
	m := &Mirror{cancel: cancel, done: make(chan struct{})}
	noted := func(e jetstream.KeyValueEntry) {
		apply(e)
		m.applied.Store(e.Revision())
	}
	w, err := kv.Watch(life, keys)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watch bucket %s: %w", kv.Bucket(), err)
	}
	var last uint64
	for initial := true; initial; {
		select {
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				cancel()
				return nil, fmt.Errorf("watch bucket %s: the watch closed before its first entries", kv.Bucket())
			case e == nil: // the end of the entries stored before the watch
				initial = false
			default:
				last = e.Revision()
				noted(e)
			}
		case <-ctx.Done():
			cancel()
			_ = w.Stop()
			return nil, errors.Join(fmt.Errorf("watch bucket %s", kv.Bucket()), ctx.Err())
		}
	}
	f := follower{nc: nc, kv: kv, keys: keys, logger: logger, apply: noted}
	go func() { // owned by the mirror: Stop cancels life and waits for done
		defer close(m.done)
		f.follow(life, w, last)
	}()
	return m, nil
}

// Stop stops applying changes and waits until the last apply has
// returned. Safe to call twice.
func (m *Mirror) Stop() {
	m.cancel()
	<-m.done
}

type follower struct {
	nc     *nats.Conn
	kv     jetstream.KeyValue
	keys   string
	logger *slog.Logger
	apply  func(jetstream.KeyValueEntry)
}

// follow applies changes until life ends. It owns the watch: after a
// reconnect (the server may have restarted, and the watch's consumer
// with it) it watches again from the revision after the last one seen,
// rather than wait for missed heartbeats to tell.
func (f follower) follow(life context.Context, w jetstream.KeyWatcher, last uint64) {
	reconnected := f.nc.StatusChanged(nats.CONNECTED)
	defer f.nc.RemoveStatusListener(reconnected)
	defer func() { _ = w.Stop() }()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e != nil && e.Revision() > last {
				last = e.Revision()
				f.apply(e)
			}
		case <-reconnected:
			nw, err := f.kv.Watch(life, f.keys, jetstream.ResumeFromRevision(last+1))
			if err != nil {
				f.logger.Warn("cannot watch a bucket again after a reconnect; the old watch goes on", "bucket", f.kv.Bucket(), "err", err)
				continue
			}
			_ = w.Stop()
			w = nw
		case <-life.Done():
			return
		}
	}
}
