package manager

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/chatfleet/chatfleet/protocol"
)

// Fleet capacity. An upstream's limits (upstreams.go) hold for the whole
// fleet, however many workers run: a generation about to call the upstream
// first passes its tenant's limits (quota.go), then the upstream's, in this
// order —
//
//   - the fleet's backoff: after a 429 anywhere in the fleet, no new call
//     starts before the backoff's Until (upstream_backoff);
//   - tokens per minute, counted when generations end (fleet_tpm);
//   - one of the upstream's max_streams shares (fleet_streams), the same
//     fleet-wide semaphore as a tenant's max_inflight, under keys of its
//     own;
//   - a request of the minute's requests_per_minute, counted with
//     compare-and-swap before the call starts (fleet_rpm).
//
// While it waits the generation holds no upstream slot, its creator's
// request slot is parked (so the worker goes on serving cache hits and
// followers), and its requests hear why (progress, waiting, the reason).
// The backoff's factor scales max_streams and requests_per_minute down
// after 429s and lets them recover (protocol.UpstreamBackoff).

// admitFleet waits until generation gen may call upstream up, and returns
// the stream share to release once the call is over (nil without a cap).
func (h *hub) admitFleet(ctx context.Context, gen int, up string) (*share, error) {
	waiting := ""
	defer func() {
		if waiting != "" {
			h.m.countFleetWaiting(waiting, -1)
		}
	}()
	wait := func(reason string) {
		if reason == waiting {
			return
		}
		if waiting == "" {
			h.creatorPermit.parkForTenant()
		} else {
			h.m.countFleetWaiting(waiting, -1)
		}
		waiting = reason
		h.m.countFleetWaiting(reason, 1)
		h.appendEntry(gen, entry{kind: entryProgress, stage: protocol.StageWaiting, reason: reason})
	}
	for {
		st, changed := h.m.upstreams.get(up)
		now := time.Now()
		if now.Before(st.backoff.Until) {
			wait(protocol.ReasonUpstreamBackoff)
			if err := sleepUntil(ctx, changed, st.backoff.Until); err != nil {
				return nil, err
			}
			continue
		}
		limits := st.effective(now)
		if _, tokens := st.window.At(now); limits.TokensPerMinute > 0 && tokens >= limits.TokensPerMinute {
			wait(protocol.ReasonFleetTPM)
			if err := sleepUntil(ctx, changed, protocol.NextMinute(now)); err != nil {
				return nil, err
			}
			continue
		}
		sh, err := h.streamShare(ctx, up, wait)
		if err != nil {
			return nil, err
		}
		// A 429 elsewhere while it waited: hold back with the rest.
		if st, _ := h.m.upstreams.get(up); time.Now().Before(st.backoff.Until) {
			sh.release()
			continue
		}
		full, err := h.m.countUpstreamRequest(ctx, up)
		if err != nil {
			// NATS trouble: the call goes ahead uncounted rather than wait.
			h.m.cfg.Logger.Warn("upstream request not counted against the fleet's requests per minute", "upstream", up, "err", err)
		}
		if !full.IsZero() {
			sh.release()
			wait(protocol.ReasonFleetRPM)
			if err := sleepUntil(ctx, nil, full); err != nil {
				return nil, err
			}
			continue
		}
		return sh, nil
	}
}

// streamShare takes one of the upstream's max_streams shares: at once if
// one is free, else it says it waits and waits.
func (h *hub) streamShare(ctx context.Context, up string, wait func(string)) (*share, error) {
	shares := h.m.shares.upstream(up)
	who := leaseValue{Tenant: h.job.Tenant, Worker: h.m.cfg.WorkerID, Request: h.job.ID, Since: time.Now().UTC()}
	sh, err := shares.acquire(ctx, who, false, h.job.Priority)
	if !errors.Is(err, errNoShare) {
		return sh, err
	}
	wait(protocol.ReasonFleetStreams)
	return shares.acquire(ctx, who, true, h.job.Priority)
}

// sleepUntil waits until t, or until changed is closed (nil: never); ctx's
// error when it ends first.
func sleepUntil(ctx context.Context, changed <-chan struct{}, t time.Time) error {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	return waitFor(ctx, changed, timer.C)
}

// countUpstreamRequest counts one call in the upstream's minute window,
// when it has a requests_per_minute: with compare-and-swap, so the fleet
// never starts more than the limit in a minute. When the minute's
// requests are used up it counts nothing and returns when the next minute
// starts (zero when counted, or without a limit).
func (m *Manager) countUpstreamRequest(ctx context.Context, up string) (time.Time, error) {
	var full time.Time
	if st, _ := m.upstreams.get(up); st.limits.RequestsPerMinute <= 0 {
		return full, nil // nothing to count: no round trip
	}
	err := m.changeWindow(ctx, up, func(w protocol.UpstreamWindow, now time.Time) (protocol.UpstreamWindow, bool) {
		st, _ := m.upstreams.get(up)
		limit := st.effective(now).RequestsPerMinute
		if limit <= 0 {
			return w, false
		}
		if requests, _ := w.At(now); requests >= limit {
			full = protocol.NextMinute(now)
			return w, false
		}
		return w.Add(1, 0, now), true
	})
	return full, err
}

// chargeUpstream adds a generation's tokens to the upstream's minute
// window, when it has a tokens_per_minute. A failure is logged: the tokens
// then do not count.
func (m *Manager) chargeUpstream(up string, u *protocol.Usage) {
	if st, _ := m.upstreams.get(up); u == nil || u.TotalTokens <= 0 || st.limits.TokensPerMinute <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(m.hard, m.leaseTTL()/2)
	defer cancel()
	err := m.changeWindow(ctx, up, func(w protocol.UpstreamWindow, now time.Time) (protocol.UpstreamWindow, bool) {
		st, _ := m.upstreams.get(up)
		if st.limits.TokensPerMinute <= 0 {
			return w, false
		}
		return w.Add(0, int64(u.TotalTokens), now), true
	})
	if err != nil {
		m.cfg.Logger.Warn("tokens not counted against the upstream's tokens per minute", "upstream", up, "tokens", u.TotalTokens, "err", err)
	}
}

// changeWindow changes the upstream's window with compare-and-swap: change
// returns the new window and whether to write it.
func (m *Manager) changeWindow(ctx context.Context, up string, change func(protocol.UpstreamWindow, time.Time) (protocol.UpstreamWindow, bool)) error {
	return m.casUpstream(ctx, m.cfg.Names.UpstreamWindowKey(up), func(b []byte) ([]byte, bool, error) {
		var w protocol.UpstreamWindow
		if b != nil {
			_ = json.Unmarshal(b, &w) // unreadable: start the window afresh
		}
		w, write := change(w, time.Now())
		if !write {
			return nil, false, nil
		}
		out, err := json.Marshal(w)
		return out, true, err
	})
}

// casUpstream changes key of the upstreams bucket with compare-and-swap.
func (m *Manager) casUpstream(ctx context.Context, key string, change func([]byte) ([]byte, bool, error)) error {
	return casUpdate(ctx, m.topo.Upstreams, key, change)
}

// RateLimited is the hook of the upstream client's Config.OnRateLimited,
// which the worker wires: a 429 any worker meets slows the whole fleet. It moves the upstream's backoff (its Until, and halves its
// factor) with compare-and-swap, and returns how long the fleet now holds
// new calls back, for the retry of the call that met it.
func (m *Manager) RateLimited(up string, retryAfter time.Duration) time.Duration {
	ctx, cancel := context.WithTimeout(m.hard, m.leaseTTL()/2)
	defer cancel()
	var until time.Time
	err := m.casUpstream(ctx, m.cfg.Names.UpstreamBackoffKey(up), func(b []byte) ([]byte, bool, error) {
		var cur protocol.UpstreamBackoff
		if b != nil {
			_ = json.Unmarshal(b, &cur)
		}
		next := cur.RateLimited(time.Now(), retryAfter)
		until = next.Until
		out, err := json.Marshal(next)
		return out, true, err
	})
	if err != nil {
		m.cfg.Logger.Warn("the upstream's 429 not shared with the fleet", "upstream", up, "err", err)
		return retryAfter
	}
	m.cfg.Logger.Info("upstream rate limited; the fleet backs off", "upstream", up, "until", until.UTC().Format(time.RFC3339Nano))
	return max(0, time.Until(until))
}
