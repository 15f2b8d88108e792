package manager

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/kvmirror"
	"github.com/chatfleet/chatfleet/protocol"
)

// tenantView mirrors the tenants bucket on this worker: every tenant's
// limits and state (protocol.Tenant, under the tenant's name) and its
// fleet-wide token windows (protocol.TenantTokens, under <tenant>.tokens).
// Every worker watches the bucket, so a change applies live everywhere,
// without a restart. A tenant the bucket does not hold has no limits.
type tenantView struct {
	m   *Manager
	now atomic.Pointer[func() time.Time] // the clock token windows are read and written with; a test's, or time.Now

	mu      sync.Mutex
	limits  map[string]protocol.Tenant
	tokens  map[string]protocol.TenantTokens
	changed map[string]chan struct{} // by tenant with entries, for waiters: closed and replaced when they change
	// unknown is the changed channel of every tenant without entries, so
	// that producers' tenant names do not grow changed: closed and replaced
	// whenever an entry of such a tenant appears.
	unknown chan struct{}
	bad     map[string]bool // keys already logged as unreadable
}

func newTenantView(m *Manager) *tenantView {
	v := &tenantView{m: m, limits: map[string]protocol.Tenant{}, tokens: map[string]protocol.TenantTokens{},
		changed: map[string]chan struct{}{}, bad: map[string]bool{}, unknown: make(chan struct{})}
	now := time.Now
	v.now.Store(&now)
	return v
}

// clock is the time token windows are counted in.
func (v *tenantView) clock() time.Time { return (*v.now.Load())() }

// get returns tenant's limits and token windows, and a channel closed when
// either changes.
func (v *tenantView) get(tenant string) (protocol.Tenant, protocol.TenantTokens, <-chan struct{}) {
	v.mu.Lock()
	defer v.mu.Unlock()
	limits, hasLimits := v.limits[tenant]
	tokens, hasTokens := v.tokens[tenant]
	if !hasLimits && !hasTokens {
		return limits, tokens, v.unknown
	}
	ch := v.changed[tenant]
	if ch == nil {
		ch = make(chan struct{})
		v.changed[tenant] = ch
	}
	return limits, tokens, ch
}

// known reports whether the bucket holds limits for tenant: it has its own
// metric label and usage counters (usage.go).
func (v *tenantView) known(tenant string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	_, ok := v.limits[tenant]
	return ok
}

// maxQueued returns the tenants with a max_queued of their own.
func (v *tenantView) maxQueued() map[string]int64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := map[string]int64{}
	for name, t := range v.limits {
		if t.MaxQueued > 0 {
			out[name] = t.MaxQueued
		}
	}
	return out
}

// apply takes one update of the bucket.
func (v *tenantView) apply(e jetstream.KeyValueEntry) {
	tenant, isTokens := strings.CutSuffix(e.Key(), ".tokens")
	if strings.Contains(tenant, ".") {
		return // not a key of this version
	}
	deleted := e.Operation() != jetstream.KeyValuePut
	var limits protocol.Tenant
	var tokens protocol.TenantTokens
	var err error
	if !deleted {
		if isTokens {
			err = decodeVersioned(e.Value(), &tokens, &tokens.V)
		} else {
			limits, err = protocol.DecodeTenant(e.Value())
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if err != nil {
		// An entry no worker can read limits nothing: say so once per key.
		if !v.bad[e.Key()] {
			v.bad[e.Key()] = true
			v.m.cfg.Logger.Warn("tenants bucket entry unreadable; ignored", "key", e.Key(), "err", err)
		}
		deleted = true
	} else {
		delete(v.bad, e.Key())
	}
	switch {
	case isTokens && deleted:
		delete(v.tokens, tenant)
	case isTokens:
		v.tokens[tenant] = tokens
	case deleted:
		delete(v.limits, tenant)
	default:
		v.limits[tenant] = limits
	}
	if ch := v.changed[tenant]; ch != nil {
		close(ch)
		delete(v.changed, tenant) // the next get makes a new one
	} else {
		close(v.unknown) // a waiter may have got it before this tenant had entries
		v.unknown = make(chan struct{})
	}
}

// watchTenants mirrors the tenants bucket into m.tenants and keeps it up
// to date until the manager stops. It returns after the entries stored so
// far, so the first job pulled sees every pause and limit; ctx bounds only
// that wait.
func (m *Manager) watchTenants(ctx context.Context) error {
	mirror, err := kvmirror.Start(ctx, m.nc, m.topo.Tenants, ">", m.cfg.Logger, m.tenants.apply)
	if err != nil {
		return fmt.Errorf("manager: tenants: %w", err)
	}
	m.tenantMirror = mirror
	return nil
}

// TenantsRevision is the tenants bucket's revision this worker has
// applied: a change stored at or before it (a pause, a limit) is in effect
// here. 0 before the manager has started.
func (m *Manager) TenantsRevision() uint64 {
	if m.tenantMirror == nil {
		return 0
	}
	return m.tenantMirror.Applied()
}
