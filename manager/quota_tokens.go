package manager

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/protocol"
)

// Token windows. A tenant's tokens per minute and per day count the tokens
// the upstream reported for its generations (prompt and completion), in
// UTC calendar windows — the minute 12:03:00–12:03:59, the day from
// midnight UTC — fleet-wide: the leader adds a generation's tokens to the
// tenant's <tenant>.tokens entry with compare-and-swap when it ends, before
// its end is published, and every worker's view of the bucket sees it.
// Followers and cache hits use no upstream tokens and add nothing. Usage
// is known only at a generation's end, so a window can end over its limit
// by what the generations running when it was reached use (at most
// max_inflight of them, when set); a generation that starts under the
// limit always finishes. Only tenants with a token limit are counted in
// the bucket.

// chargeAttempts bounds the compare-and-swap attempts of one charge: each
// lost race means another worker's charge went in.
const chargeAttempts = 10

// chargeTokens adds a generation's tokens to its tenant's windows, when
// the tenant has a token limit. A failure is logged: the tokens then do
// not count, and the tenant may overshoot by them.
func (m *Manager) chargeTokens(tenant string, u *protocol.Usage) {
	limits, _, _ := m.tenants.get(tenant)
	if u == nil || u.TotalTokens <= 0 || (limits.TokensPerMinute <= 0 && limits.TokensPerDay <= 0) {
		return
	}
	ctx, cancel := context.WithTimeout(m.hard, m.leaseTTL()/2)
	defer cancel()
	if err := m.addTokens(ctx, tenant, int64(u.TotalTokens)); err != nil {
		m.cfg.Logger.Warn("tokens not counted against the tenant's limits", "tenant", tenant, "tokens", u.TotalTokens, "err", err)
	}
}

// addTokens adds n tokens to tenant's windows with compare-and-swap.
func (m *Manager) addTokens(ctx context.Context, tenant string, n int64) error {
	return casUpdate(ctx, m.topo.Tenants, m.cfg.Names.TenantTokensKey(tenant), func(b []byte) ([]byte, bool, error) {
		var cur protocol.TenantTokens
		if b != nil {
			_ = json.Unmarshal(b, &cur) // unreadable: start the windows afresh
		}
		out, err := json.Marshal(cur.Add(n, m.tenants.clock()))
		return out, true, err
	})
}

// casUpdate changes key of kv with compare-and-swap: change gets the value
// now (nil when none) and returns the new one and whether to write it.
// Each lost race means another worker's change went in; it tries
// chargeAttempts times.
func casUpdate(ctx context.Context, kv jetstream.KeyValue, key string, change func([]byte) ([]byte, bool, error)) error {
	var err error
	for range chargeAttempts {
		var cur []byte
		var rev uint64
		e, gerr := kv.Get(ctx, key)
		switch {
		case gerr == nil:
			cur, rev = e.Value(), e.Revision()
		case !errors.Is(gerr, jetstream.ErrKeyNotFound):
			return gerr
		}
		b, write, cerr := change(cur)
		if cerr != nil || !write {
			return cerr
		}
		if rev == 0 {
			_, err = kv.Create(ctx, key, b)
		} else {
			_, err = kv.Update(ctx, key, b, rev)
		}
		if err == nil || !(errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)) {
			return err
		}
	}
	return err
}
