package manager

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/chatfleet/chatfleet/protocol"
)

// Quotas. A tenant's limits (tenants.go) apply where a generation is about
// to call the upstream: only leaders are held back — followers and cache
// hits cost no upstream call and are never limited. The queued-jobs cap is
// the jobs stream's and the maintainer's (maintenance_quota.go); a paused
// tenant's jobs wait when pulled (pause.go).

// inflightRetryAfter is the retry_after_ms of a job a tenant at its
// max_inflight rejects: how soon a generation may end is not known, so a
// short hint.
const inflightRetryAfter = time.Second

// quotaError ends a generation at a tenant's limit (a tenant that rejects
// at its limits, or a token window that opens only after the job's
// deadline).
type quotaError struct {
	tenant     string
	limit      string // protocol.LimitMaxInflight, …
	retryAfter time.Duration
	detail     string
}

func (e *quotaError) Error() string {
	return fmt.Sprintf("tenant %s is at its %s: %s", e.tenant, e.limit, e.detail)
}

// protocol is the error event's error.
func (e *quotaError) protocol() *protocol.Error {
	return &protocol.Error{Code: protocol.CodeQuotaExceeded, Limit: e.limit, Message: e.Error(),
		RetryAfterMS: int64(math.Ceil(float64(e.retryAfter) / float64(time.Millisecond)))}
}

// admit lets generation gen call the upstream once its tenant allows it:
// not paused, under its tokens per minute and per day, and holding one of
// its max_inflight shares. While it waits the hub says why (a progress
// entry: waiting, with the reason), its creator's slot is parked, and it
// holds no upstream slot. A tenant that rejects at its limits ends the
// generation with a *quotaError instead of waiting, and so does a token
// window that opens only after the generation's deadline. It returns the
// share to release once the upstream call is over (nil without a limit).
func (h *hub) admit(ctx context.Context, gen int) (*share, error) {
	tenant := h.job.Tenant
	waiting := ""
	var waitingLabel string
	defer func() {
		if waiting != "" {
			h.m.countTenantWaiting(waitingLabel, waiting, -1)
			h.m.held.tenant.Add(-1)
		}
	}()
	wait := func(reason string) {
		if reason == waiting {
			return
		}
		if waiting == "" {
			h.creatorPermit.parkForTenant()
			waitingLabel = h.m.tenantLabel(tenant)
			h.m.held.tenant.Add(1)
		} else {
			h.m.countTenantWaiting(waitingLabel, waiting, -1)
		}
		waiting = reason
		h.m.countTenantWaiting(waitingLabel, reason, 1)
		h.appendEntry(gen, entry{kind: entryProgress, stage: protocol.StageWaiting, reason: reason})
	}
	for {
		limits, tokens, changed := h.m.tenants.get(tenant)
		if limits.Paused {
			wait(protocol.ReasonTenantPaused)
			if err := waitFor(ctx, changed, nil); err != nil {
				return nil, err
			}
			continue
		}
		if limit, retry := tokensOver(limits, tokens, h.m.tenants.clock()); limit != "" {
			if limits.Rejects() || !opensBefore(ctx, retry) {
				return nil, &quotaError{tenant: tenant, limit: limit, retryAfter: retry,
					detail: fmt.Sprintf("its %s window opens again in %s", limit, retry.Round(time.Second))}
			}
			wait(protocol.ReasonTenantTokens)
			t := time.NewTimer(retry)
			err := waitFor(ctx, changed, t.C)
			t.Stop()
			if err != nil {
				return nil, err
			}
			continue
		}
		sh, err := h.share(ctx, limits, wait)
		if err != nil || sh == nil {
			return sh, err
		}
		// Paused, or a window used up, while it waited: give the share to
		// someone who may use it, and look again.
		limits, tokens, _ = h.m.tenants.get(tenant)
		if over, _ := tokensOver(limits, tokens, h.m.tenants.clock()); limits.Paused || over != "" {
			sh.release()
			continue
		}
		return sh, nil
	}
}

// share takes one of the tenant's max_inflight shares: at once if one is
// free; else it waits (reporting why) or, for a tenant that rejects, ends
// the generation.
func (h *hub) share(ctx context.Context, limits protocol.Tenant, wait func(string)) (*share, error) {
	if limits.MaxInflight <= 0 {
		return nil, nil
	}
	shares := h.m.shares.tenant(h.job.Tenant)
	who := leaseValue{Tenant: h.job.Tenant, Worker: h.m.cfg.WorkerID, Request: h.job.ID, Since: time.Now().UTC()}
	sh, err := shares.acquire(ctx, who, false, h.job.Priority)
	if !errors.Is(err, errNoShare) {
		return sh, err
	}
	if limits.Rejects() {
		return nil, &quotaError{tenant: h.job.Tenant, limit: protocol.LimitMaxInflight, retryAfter: inflightRetryAfter,
			detail: fmt.Sprintf("%d generations in flight across the fleet", limits.MaxInflight)}
	}
	wait(protocol.ReasonTenantInflight)
	return shares.acquire(ctx, who, true, h.job.Priority)
}

// tokensOver names the token limit the tenant has used up at now ("" for
// none) and how long until its window opens again (the later one when
// both are used up).
func tokensOver(limits protocol.Tenant, tokens protocol.TenantTokens, now time.Time) (string, time.Duration) {
	minute, day := tokens.At(now)
	switch {
	case limits.TokensPerDay > 0 && day >= limits.TokensPerDay:
		return protocol.LimitTokensPerDay, protocol.NextDay(now).Sub(now)
	case limits.TokensPerMinute > 0 && minute >= limits.TokensPerMinute:
		return protocol.LimitTokensPerMinute, protocol.NextMinute(now).Sub(now)
	}
	return "", 0
}

// opensBefore reports whether a window opening after d does so before
// ctx's deadline: worth waiting for.
func opensBefore(ctx context.Context, d time.Duration) bool {
	deadline, ok := ctx.Deadline()
	return !ok || time.Now().Add(d).Before(deadline)
}

// waitFor waits until changed is closed or tick fires (nil: never); ctx's
// error when it ends first.
func waitFor(ctx context.Context, changed <-chan struct{}, tick <-chan time.Time) error {
	select {
	case <-changed:
		return nil
	case <-tick:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
