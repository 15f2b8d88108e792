package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/kvmirror"
)

// The API keys bucket (subjects.Names.APIKeysBucket) keeps keys where
// every replica reads them and an operator adds or revokes one without a
// restart: the key is a key's hash (KeyHash), the value its tenant.

// watchKeyBucket fills a store from the bucket and keeps it current until
// the returned mirror stops.
func (g *Gateway) watchKeyBucket(ctx context.Context) (*KeyStore, *kvmirror.Mirror, error) {
	js, err := jetstream.New(g.nc)
	if err != nil {
		return nil, nil, err
	}
	kv, err := js.KeyValue(ctx, g.cfg.Names.APIKeysBucket())
	if err != nil {
		return nil, nil, fmt.Errorf("gateway: API keys bucket %s (made by chatfleet init or any worker): %w", g.cfg.Names.APIKeysBucket(), err)
	}
	ks := newKeyStore()
	m, err := kvmirror.Start(ctx, g.nc, kv, ">", g.cfg.Logger, func(e jetstream.KeyValueEntry) {
		if e.Operation() != jetstream.KeyValuePut {
			ks.remove(e.Key())
			return
		}
		if err := ks.set(e.Key(), string(e.Value())); err != nil {
			g.cfg.Logger.Warn("API keys bucket: entry ignored", "key", e.Key(), "err", err)
		}
	})
	if err != nil {
		return nil, nil, fmt.Errorf("gateway: API keys: %w", err)
	}
	return ks, m, nil
}

// AddKey makes a key for tenant, stores its hash in the API keys bucket
// kv, and returns the key: shown once, never stored.
func AddKey(ctx context.Context, kv jetstream.KeyValue, tenant string) (string, error) {
	key, _, err := NewKey(tenant)
	if err != nil {
		return "", err
	}
	if _, err := kv.Create(ctx, KeyHash(key), []byte(tenant)); err != nil {
		return "", fmt.Errorf("gateway: store key: %w", err)
	}
	return key, nil
}

// ErrNoSuchKey: no key in the bucket has that hash.
var ErrNoSuchKey = errors.New("gateway: no such key")

// RevokeKey removes a key from the API keys bucket kv, named by the key
// itself or by its hash; every gateway stops taking it within moments.
func RevokeKey(ctx context.Context, kv jetstream.KeyValue, keyOrHash string) error {
	hash := keyOrHash
	if strings.HasPrefix(keyOrHash, "cf-") {
		hash = KeyHash(keyOrHash)
	}
	if _, err := kv.Get(ctx, hash); err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
			return ErrNoSuchKey
		}
		return err
	}
	return kv.Delete(ctx, hash)
}

// StoredKey is a key in the API keys bucket: its hash and tenant.
type StoredKey struct{ Hash, Tenant string }

// ListKeys returns the keys in the API keys bucket kv.
func ListKeys(ctx context.Context, kv jetstream.KeyValue) ([]StoredKey, error) {
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = lister.Stop() }()
	var out []StoredKey
	for k := range lister.Keys() {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // revoked meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, StoredKey{Hash: k, Tenant: string(e.Value())})
	}
	return out, nil
}
