package kvmirror_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/chatfleet/chatfleet/internal/kvmirror"
	"github.com/chatfleet/chatfleet/internal/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// view is what a mirror builds: the bucket's keys and values, with a
// signal on every change.
type view struct {
	mu      sync.Mutex
	values  map[string]string
	changed chan struct{}
}

func newView() *view { return &view{values: map[string]string{}, changed: make(chan struct{}, 100)} }

func (v *view) apply(e jetstream.KeyValueEntry) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if e.Operation() == jetstream.KeyValuePut {
		v.values[e.Key()] = string(e.Value())
	} else {
		delete(v.values, e.Key())
	}
	v.changed <- struct{}{}
}

func (v *view) get(k string) (string, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	val, ok := v.values[k]
	return val, ok
}

// waitFor blocks until key k has value want ("" for absent).
func (v *view) waitFor(t *testing.T, ctx context.Context, k, want string) {
	t.Helper()
	for {
		if got, _ := v.get(k); got == want {
			return
		}
		select {
		case <-v.changed:
		case <-ctx.Done():
			got, _ := v.get(k)
			t.Fatalf("%s = %q, want %q", k, got, want)
		}
	}
}

// TestMirrorFollowsRestart: entries stored before Start are applied when
// Start returns; puts and deletes after it arrive; after the server
// restarts (and the watch's consumer is gone) changes still arrive, none
// twice.
func TestMirrorFollowsRestart(t *testing.T) {
	dir := t.TempDir()
	s := natstest.RunServerIn(t, dir)
	addr := strings.TrimPrefix(s.ClientURL(), "nats://")
	nc, js := natstest.JetStream(t, s.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "mirror", Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.PutString(ctx, "before", "1"); err != nil {
		t.Fatal(err)
	}
	v := newView()
	m, err := kvmirror.Start(ctx, nc, kv, ">", slog.New(slog.NewTextHandler(io.Discard, nil)), v.apply)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	if got, ok := v.get("before"); !ok || got != "1" {
		t.Fatalf("Start returned before the stored entry was applied: %q %v", got, ok)
	}
	if _, err := kv.PutString(ctx, "after", "2"); err != nil {
		t.Fatal(err)
	}
	v.waitFor(t, ctx, "after", "2")
	if err := kv.Delete(ctx, "before"); err != nil {
		t.Fatal(err)
	}
	v.waitFor(t, ctx, "before", "")

	reconnected := nc.StatusChanged(nats.CONNECTED)
	defer nc.RemoveStatusListener(reconnected)
	s.Shutdown()
	natstest.RunServerAt(t, addr, dir)
	select {
	case <-reconnected:
	case <-ctx.Done():
		t.Fatal("never reconnected")
	}
	if _, err := kv.PutString(ctx, "restarted", "3"); err != nil {
		t.Fatal(err)
	}
	v.waitFor(t, ctx, "restarted", "3")
	if n := len(v.changed); n != 0 {
		t.Errorf("%d changes applied twice", n)
	}
}

// TestStartBoundedByContext: a bucket whose watch cannot start in time
// gives an error, and leaves nothing running.
func TestStartBoundedByContext(t *testing.T) {
	s := natstest.RunServer(t)
	nc, js := natstest.JetStream(t, s.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "gone"})
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteKeyValue(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	short, stop := context.WithTimeout(ctx, 200*time.Millisecond)
	defer stop()
	if m, err := kvmirror.Start(short, nc, kv, ">", slog.Default(), func(jetstream.KeyValueEntry) {}); err == nil {
		m.Stop()
		t.Fatal("Start on a deleted bucket succeeded")
	}
}
