package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/manager"
	"github.com/chatfleet/chatfleet/protocol"
)

// tenantReport is what `chatfleet tenant show` shows, and prints with
// --json.
type tenantReport struct {
	Tenant string `json:"tenant"`
	// InBucket is false for a tenant without an entry: no limits, and its
	// usage counted with every such tenant's as (other).
	InBucket bool            `json:"in_bucket"`
	Limits   protocol.Tenant `json:"limits"`
	// Queued is its jobs in the jobs stream, waiting or running.
	Queued uint64 `json:"queued"`
	// InFlight is its shares held: generations at the upstream, counted
	// only while it has a max_inflight.
	InFlight int `json:"in_flight"`
	// TokensThisMinute and TokensToday are its fleet-wide token windows
	// (UTC), counted only while it has a token limit.
	TokensThisMinute int64 `json:"tokens_this_minute"`
	TokensToday      int64 `json:"tokens_today"`
	// Workers answered; Usage sums theirs, each since it started.
	Workers int                 `json:"workers"`
	Usage   manager.TenantUsage `json:"usage"`
}

func showTenant(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, s tenantStore, name string, f *tenantFlags, io IO) error {
	rep, err := collectTenant(ctx, nc, js, s, name, f.wait)
	if err != nil {
		return err
	}
	if f.asJSON {
		return json.NewEncoder(io.Out).Encode(rep)
	}
	fmt.Fprintf(io.Out, "tenant %s · prefix %s\n\n", name, s.names.Prefix())
	if !rep.InBucket {
		fmt.Fprintf(io.Out, "limits   none: not in the tenants bucket (chatfleet tenant set %s adds it); its usage is counted as %s\n", name, manager.OtherTenants)
		fmt.Fprintf(io.Out, "now      %d jobs queued or running\n", rep.Queued)
		return nil
	}
	fmt.Fprintf(io.Out, "limits   %s\n", describeLimits(rep.Limits))
	inflight := "in flight: not counted (no max in flight)"
	if rep.Limits.MaxInflight > 0 {
		inflight = fmt.Sprintf("%d of %d generations in flight", rep.InFlight, rep.Limits.MaxInflight)
	}
	tokens := "tokens: not counted (no token limit)"
	if rep.Limits.TokensPerMinute > 0 || rep.Limits.TokensPerDay > 0 {
		tokens = fmt.Sprintf("%d tokens this minute · %d today (UTC)", rep.TokensThisMinute, rep.TokensToday)
	}
	fmt.Fprintf(io.Out, "now      %d jobs queued or running · %s · %s\n", rep.Queued, inflight, tokens)
	u := rep.Usage
	fmt.Fprintf(io.Out, "usage    on %d workers, since each started: %d done · %d errors (%d quota_exceeded) · %d cancelled\n",
		rep.Workers, u.Done, u.Errors, u.QuotaExceeded, u.Cancelled)
	_, err = fmt.Fprintf(io.Out, "tokens   %d prompt · %d completion · saved %d by dedupe, %d by the cache\n",
		u.PromptTokens, u.CompletionTokens, u.SavedByDedupe, u.SavedByCache)
	return err
}

// collectTenant reads a tenant's limits and token windows from the
// tenants bucket, its queued jobs from the jobs stream, its shares from
// the in-flight bucket, and its usage from every worker's status.
func collectTenant(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, s tenantStore, name string, wait time.Duration) (*tenantReport, error) {
	names := s.names
	rep := &tenantReport{Tenant: name}
	var err error
	if rep.Limits, _, rep.InBucket, err = s.get(ctx, name); err != nil {
		return nil, fmt.Errorf("tenant %s: %w", name, err)
	}
	jobs, err := js.Stream(ctx, names.JobsStream())
	if err != nil {
		return nil, fmt.Errorf("jobs stream %s: %w (%s)", names.JobsStream(), err, topologyHint)
	}
	for _, filter := range names.TenantJobs(name) { // every priority
		info, err := jobs.Info(ctx, jetstream.WithSubjectFilter(filter))
		if err != nil {
			return nil, err
		}
		for _, n := range info.State.Subjects {
			rep.Queued += n
		}
	}
	if e, err := s.kv.Get(ctx, names.TenantTokensKey(name)); err == nil {
		var u protocol.TenantTokens
		if json.Unmarshal(e.Value(), &u) == nil {
			rep.TokensThisMinute, rep.TokensToday = u.At(time.Now())
		}
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, err
	}
	if rep.InFlight, err = countShares(ctx, js, names.InflightBucket(), names.TenantShares(name)); err != nil {
		return nil, err
	}
	if !rep.InBucket {
		return rep, nil
	}
	workers, err := workerStatuses(ctx, nc, names.Prefix(), wait)
	if err != nil {
		return nil, err
	}
	rep.Workers = len(workers)
	for _, w := range workers {
		u, _ := w.Tenant(name)
		rep.Usage.Done += u.Done
		rep.Usage.Errors += u.Errors
		rep.Usage.QuotaExceeded += u.QuotaExceeded
		rep.Usage.Cancelled += u.Cancelled
		rep.Usage.PromptTokens += u.PromptTokens
		rep.Usage.CompletionTokens += u.CompletionTokens
		rep.Usage.SavedByDedupe += u.SavedByDedupe
		rep.Usage.SavedByCache += u.SavedByCache
	}
	return rep, nil
}

// countShares counts the keys of bucket that match pattern.
func countShares(ctx context.Context, js jetstream.JetStream, bucket, pattern string) (int, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return 0, fmt.Errorf("bucket %s: %w (%s)", bucket, err, topologyHint)
	}
	keys, err := kv.ListKeysFiltered(ctx, pattern)
	if err != nil {
		return 0, err
	}
	n := 0
	for range keys.Keys() {
		n++
	}
	return n, nil
}
