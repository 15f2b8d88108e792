package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/subjects"
)

const cacheUsage = `Usage:
  chatfleet cache purge                  remove every cached answer
  chatfleet cache purge --tenant T       remove tenant T's
  chatfleet cache purge --key T.HASH     remove one (the key as workers log it; or --tenant T --key HASH)`

// runCache manages the answer cache.
func runCache(ctx context.Context, args []string, io IO) int {
	if len(args) == 0 || args[0] != "purge" {
		fmt.Fprintln(io.Err, cacheUsage)
		return ExitUsage
	}
	fs := flag.NewFlagSet("cache purge", flag.ContinueOnError)
	fs.SetOutput(io.Err)
	fs.Usage = func() { fmt.Fprintln(io.Err, cacheUsage) }
	tenant := fs.String("tenant", "", "only this tenant's answers")
	key := fs.String("key", "", "only this answer: TENANT.HASH, or HASH with --tenant")
	if err := fs.Parse(args[1:]); err != nil {
		return ExitUsage
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return ExitUsage
	}
	keys, what, err := cacheKeys(*tenant, *key)
	if err != nil {
		fmt.Fprintln(io.Err, "chatfleet cache purge:", err)
		return ExitUsage
	}
	_, names, nc, code := connect(io, "cache")
	if code != ExitOK {
		return code
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	n, err := purgeCache(ctx, nc, names, keys)
	if err != nil {
		fmt.Fprintln(io.Err, "chatfleet cache purge:", err)
		return ExitFailed
	}
	fmt.Fprintf(io.Out, "purged %d cached answers (%s)\n", n, what)
	return ExitOK
}

// cacheKeys returns the cache keys the flags select, as a key pattern, and
// says what they are.
func cacheKeys(tenant, key string) (pattern, what string, err error) {
	if tenant != "" {
		if err := subjects.ValidName("tenant", tenant); err != nil {
			return "", "", err
		}
	}
	switch {
	case key == "" && tenant == "":
		return ">", "all tenants", nil
	case key == "":
		return tenant + ".>", "tenant " + tenant, nil
	}
	if t, hash, ok := strings.Cut(key, "."); ok {
		if tenant != "" && tenant != t {
			return "", "", fmt.Errorf("--key %s is tenant %s's, not %s's", key, t, tenant)
		}
		tenant, key = t, hash
	}
	if tenant == "" {
		return "", "", fmt.Errorf("--key %s names no tenant: give TENANT.HASH, or --tenant", key)
	}
	if err := subjects.ValidToken("key", key); err != nil {
		return "", "", err
	}
	return tenant + "." + key, "key " + tenant + "." + key, nil
}

// purgeCache removes the cache bucket's entries whose keys match pattern
// from its stream at once, and returns how many there were.
func purgeCache(ctx context.Context, nc *nats.Conn, names subjects.Names, pattern string) (uint64, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	kv, err := js.KeyValue(ctx, names.CacheBucket())
	if err != nil {
		return 0, fmt.Errorf("bucket %s: %w (%s)", names.CacheBucket(), err, topologyHint)
	}
	stream, err := js.Stream(ctx, "KV_"+kv.Bucket())
	if err != nil {
		return 0, err
	}
	subject := "$KV." + kv.Bucket() + "." + pattern
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return 0, err
	}
	if err := stream.Purge(ctx, jetstream.WithPurgeSubject(subject)); err != nil {
		return 0, err
	}
	return uint64(len(info.State.Subjects)), nil
}
