package gateway_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/gateway"
	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/subjects"
)

// TestKeysFromBucket: a gateway reading the API keys bucket takes a key
// stored before it started, one added while it runs, and stops taking a
// revoked one; an entry that is not a key is ignored.
func TestKeysFromBucket(t *testing.T) {
	t.Parallel()
	ctx := fleettest.Context(t, 30*time.Second)
	b := setup(t, fleettest.Options{}, nil) // a fleet whose topology has the bucket
	kv, err := jsOf(t, b.f).KeyValue(ctx, b.f.Topology.WithDefaults().Names.APIKeysBucket())
	if err != nil {
		t.Fatal(err)
	}
	early, err := gateway.AddKey(ctx, kv, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.PutString(ctx, "not-a-hash", "acme"); err != nil {
		t.Fatal(err)
	}
	gw := bundle{f: b.f}.withGateway(t, func(c *gateway.Config) { c.KeysFromBucket = true })

	status := func(key string) int {
		code, _ := postError(t, ctx, gw.url+"/chat/completions", `{"model":"`+testModel+`","messages":[{"role":"user","content":"keyed"}]}`, key)
		return code
	}
	if got := status(early); got != http.StatusOK {
		t.Errorf("a key stored before start: %d", got)
	}
	if got := status("not-a-hash"); got != http.StatusUnauthorized {
		t.Errorf("a bucket entry that is not a key's hash: %d", got)
	}
	late, err := gateway.AddKey(ctx, kv, "globex")
	if err != nil {
		t.Fatal(err)
	}
	fleettest.Poll(t, ctx, "a key added live is taken", func() bool { return status(late) == http.StatusOK })
	if err := gateway.RevokeKey(ctx, kv, early); err != nil {
		t.Fatal(err)
	}
	fleettest.Poll(t, ctx, "a revoked key is refused", func() bool { return status(early) == http.StatusUnauthorized })
	if err := gateway.RevokeKey(ctx, kv, gateway.KeyHash(early)); err != gateway.ErrNoSuchKey {
		t.Errorf("revoking twice: %v, want ErrNoSuchKey", err)
	}
	keys, err := gateway.ListKeys(ctx, kv)
	if err != nil || len(keys) != 2 || !hasKey(keys, gateway.KeyHash(late), "globex") {
		t.Errorf("ListKeys = %v, %v; want globex's key and the stray entry", keys, err)
	}

	// Without the bucket the gateway does not start.
	bare, err := gateway.New(gateway.Config{Names: mustNames(t, "nobucket"), KeysFromBucket: true, Logger: fleettest.Logger()}, natsConn(t, b))
	if err != nil {
		t.Fatal(err)
	}
	if err := bare.Start(ctx); err == nil {
		t.Error("started without its keys bucket")
	}
	if err := bare.Stop(context.Background()); err != nil {
		t.Error(err)
	}
}

func hasKey(keys []gateway.StoredKey, hash, tenant string) bool {
	for _, k := range keys {
		if k.Hash == hash && k.Tenant == tenant {
			return true
		}
	}
	return false
}

func mustNames(t *testing.T, prefix string) subjects.Names {
	n, err := subjects.New(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
