package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/gateway"
)

// runGatewayKey makes an API key for a tenant: printed once with its key
// file line, or with --kv stored (hashed) in the fleet's API keys bucket,
// where every gateway with CHATFLEET_GATEWAY_KEYS=kv takes it at once.
func runGatewayKey(ctx context.Context, args []string, io IO) int {
	fs := flag.NewFlagSet("gateway key", flag.ContinueOnError)
	fs.SetOutput(io.Err)
	toBucket := fs.Bool("kv", false, "store the key's hash in the fleet's API keys bucket instead of printing a key file line")
	fs.Usage = func() {
		fmt.Fprintln(io.Err, "Usage: chatfleet gateway key [--kv] TENANT   (makes an API key for TENANT; shown once)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return ExitUsage
	}
	tenant := fs.Arg(0)
	if !*toBucket {
		key, line, err := gateway.NewKey(tenant)
		if err != nil {
			fmt.Fprintln(io.Err, "chatfleet gateway key:", err)
			return ExitUsage
		}
		fmt.Fprintf(io.Out, "API key (shown once; give it to the tenant's applications):\n  %s\nAdd this line to the key file (CHATFLEET_GATEWAY_KEYS):\n  %s\n", key, line)
		return ExitOK
	}
	if _, _, err := gateway.NewKey(tenant); err != nil { // the tenant's name, checked before connecting
		fmt.Fprintln(io.Err, "chatfleet gateway key:", err)
		return ExitUsage
	}
	return withKeyBucket(ctx, io, "gateway key", func(ctx context.Context, kv jetstream.KeyValue) error {
		key, err := gateway.AddKey(ctx, kv, tenant)
		if err == nil {
			fmt.Fprintf(io.Out, "API key (shown once; give it to the tenant's applications):\n  %s\nStored as %s for tenant %s in bucket %s.\n",
				key, gateway.KeyHash(key), tenant, kv.Bucket())
		}
		return err
	})
}

// runGatewayKeys lists the keys in the API keys bucket: hash and tenant.
func runGatewayKeys(ctx context.Context, args []string, io IO) int {
	if len(args) != 0 {
		fmt.Fprintln(io.Err, "Usage: chatfleet gateway keys   (lists the API keys bucket: each key's hash and tenant)")
		return ExitUsage
	}
	return withKeyBucket(ctx, io, "gateway keys", func(ctx context.Context, kv jetstream.KeyValue) error {
		keys, err := gateway.ListKeys(ctx, kv)
		for _, k := range keys {
			fmt.Fprintf(io.Out, "%s  %s\n", k.Hash, k.Tenant)
		}
		return err
	})
}

// runGatewayRevoke removes a key from the API keys bucket.
func runGatewayRevoke(ctx context.Context, args []string, io IO) int {
	if len(args) != 1 {
		fmt.Fprintln(io.Err, "Usage: chatfleet gateway revoke KEY|HASH   (removes a key from the API keys bucket; every gateway stops taking it)")
		return ExitUsage
	}
	return withKeyBucket(ctx, io, "gateway revoke", func(ctx context.Context, kv jetstream.KeyValue) error {
		err := gateway.RevokeKey(ctx, kv, args[0])
		if err == nil {
			fmt.Fprintln(io.Out, "revoked")
		}
		return err
	})
}

// withKeyBucket runs do on the fleet's API keys bucket.
func withKeyBucket(ctx context.Context, io IO, cmd string, do func(context.Context, jetstream.KeyValue) error) int {
	_, names, nc, code := connect(io, cmd)
	if code != ExitOK {
		return code
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Fprintln(io.Err, "chatfleet "+cmd+":", err)
		return ExitFailed
	}
	kv, err := js.KeyValue(ctx, names.APIKeysBucket())
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		fmt.Fprintf(io.Err, "chatfleet %s: no bucket %s: run chatfleet init (or start a worker) first\n", cmd, names.APIKeysBucket())
		return ExitFailed
	}
	if err == nil {
		err = do(ctx, kv)
	}
	if err != nil {
		fmt.Fprintln(io.Err, "chatfleet "+cmd+":", err)
		return ExitFailed
	}
	return ExitOK
}
