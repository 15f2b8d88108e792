package manager

import (
	"context"
	"maps"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/chatfleet/chatfleet/protocol"
)

// OtherTenants is the label under which every tenant the tenants bucket
// does not hold is counted, in TenantUsage and in the chatfleet_tenant_*
// metrics: the tenant label takes one value per tenant an operator set
// (chatfleet tenant set), plus this one, so producers cannot grow it. No
// tenant can be named so.
const OtherTenants = "(other)"

// TenantUsage is what this worker did for one tenant since it started:
// its jobs by outcome, the upstream tokens its generations used, and the
// tokens its requests were answered with without an upstream call.
// Its JSON (in the worker's status) has snake_case keys.
type TenantUsage struct {
	Done          int64 `json:"done"`           // jobs that ended done
	Errors        int64 `json:"errors"`         // jobs that ended with an error event
	QuotaExceeded int64 `json:"quota_exceeded"` // of Errors, those with quota_exceeded
	Cancelled     int64 `json:"cancelled"`      // jobs that ended cancelled
	// PromptTokens and CompletionTokens the upstream reported for the
	// generations this worker led.
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	// SavedByDedupe and SavedByCache are the total tokens of the answers
	// of requests that followed another request's generation or read the
	// cache: what they would have cost.
	SavedByDedupe int64 `json:"saved_by_dedupe"`
	SavedByCache  int64 `json:"saved_by_cache"`
}

// usage counts per tenant, in both views: TenantUsage (the worker's status,
// `chatfleet tenant show`) and the chatfleet_tenant_* instruments.
type usage struct {
	jobs    metric.Int64Counter       // by tenant, outcome, code
	tokens  metric.Int64Counter       // by tenant, kind
	saved   metric.Int64Counter       // by tenant, by
	waiting metric.Int64UpDownCounter // by tenant, reason

	mu sync.Mutex
	by map[string]*TenantUsage // by label
}

func newUsage(mp metric.MeterProvider) (*usage, error) {
	meter := mp.Meter("github.com/chatfleet/chatfleet/manager")
	u := &usage{by: map[string]*TenantUsage{}}
	var errs [4]error
	u.jobs, errs[0] = meter.Int64Counter("chatfleet.tenant.jobs",
		metric.WithDescription("Jobs settled, by tenant (those in the tenants bucket; the rest as (other)), outcome and error code."))
	u.tokens, errs[1] = meter.Int64Counter("chatfleet.tenant.tokens",
		metric.WithDescription("Tokens the upstream reported for generations led here, by tenant and kind (prompt, completion)."))
	u.saved, errs[2] = meter.Int64Counter("chatfleet.tenant.tokens.saved",
		metric.WithDescription("Tokens of answers served without an upstream call, by tenant and by (dedupe, cache)."))
	u.waiting, errs[3] = meter.Int64UpDownCounter("chatfleet.tenant.waiting",
		metric.WithDescription("Jobs waiting for their tenant now, by tenant and reason (tenant_paused, tenant_inflight, tenant_tokens)."))
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return u, nil
}

// tenantLabel is tenant's label: its name when the tenants bucket holds
// it, OtherTenants otherwise.
func (m *Manager) tenantLabel(tenant string) string {
	if m.tenants.known(tenant) {
		return tenant
	}
	return OtherTenants
}

// of returns the counters of label, under mu.
func (u *usage) of(label string) *TenantUsage {
	c := u.by[label]
	if c == nil {
		c = &TenantUsage{}
		u.by[label] = c
	}
	return c
}

// TenantUsage returns this worker's counters by tenant label: the tenants
// the tenants bucket held when their jobs ended, and OtherTenants.
func (m *Manager) TenantUsage() map[string]TenantUsage {
	m.usage.mu.Lock()
	defer m.usage.mu.Unlock()
	out := make(map[string]TenantUsage, len(m.usage.by))
	for label, c := range maps.All(m.usage.by) {
		out[label] = *c
	}
	return out
}

// countTenantJob counts a settled request under its tenant: its outcome
// and, for a request answered without an upstream call, the tokens saved.
func (m *Manager) countTenantJob(r *request) {
	if r.job == nil || r.outcome == "" {
		return
	}
	label := m.tenantLabel(r.job.Tenant)
	m.usage.jobs.Add(r.traceCtx, 1, metric.WithAttributes(attribute.String("tenant", label),
		attribute.String("outcome", r.outcome), attribute.String("code", string(r.code))))
	var by metric.MeasurementOption
	var saved int64
	if r.outcome == string(protocol.EventDone) && r.usage != nil {
		switch r.role {
		case protocol.RoleFollower:
			by, saved = savedByDedupe, int64(r.usage.TotalTokens)
		case protocol.RoleCache:
			by, saved = savedByCache, int64(r.usage.TotalTokens)
		}
	}
	if by != nil {
		m.usage.saved.Add(r.traceCtx, saved, metric.WithAttributes(attribute.String("tenant", label)), by)
	}
	m.usage.mu.Lock()
	defer m.usage.mu.Unlock()
	c := m.usage.of(label)
	switch protocol.EventType(r.outcome) {
	case protocol.EventDone:
		c.Done++
		if r.role == protocol.RoleFollower {
			c.SavedByDedupe += saved
		} else if r.role == protocol.RoleCache {
			c.SavedByCache += saved
		}
	case protocol.EventError:
		c.Errors++
		if r.code == protocol.CodeQuotaExceeded {
			c.QuotaExceeded++
		}
	case protocol.EventCancelled:
		c.Cancelled++
	}
}

// countTenantEnding counts a job the maintainer ended while queued with ev.
func (m *Manager) countTenantEnding(ctx context.Context, tenant string, ev protocol.Event) {
	label := m.tenantLabel(tenant)
	var code protocol.Code
	if ev.Error != nil {
		code = ev.Error.Code
	}
	m.usage.jobs.Add(ctx, 1, metric.WithAttributes(attribute.String("tenant", label),
		attribute.String("outcome", string(ev.Type)), attribute.String("code", string(code))))
	m.usage.mu.Lock()
	defer m.usage.mu.Unlock()
	c := m.usage.of(label)
	switch ev.Type {
	case protocol.EventError:
		c.Errors++
		if code == protocol.CodeQuotaExceeded {
			c.QuotaExceeded++
		}
	case protocol.EventCancelled:
		c.Cancelled++
	}
}

// usedTokens counts the tokens a generation led here used, under its
// tenant, and adds them to the tenant's token windows (quota_tokens.go).
func (m *Manager) usedTokens(ctx context.Context, tenant string, u *protocol.Usage) {
	if u == nil {
		return
	}
	label := m.tenantLabel(tenant)
	t := metric.WithAttributes(attribute.String("tenant", label))
	m.usage.tokens.Add(ctx, int64(u.PromptTokens), t, promptTokens)
	m.usage.tokens.Add(ctx, int64(u.CompletionTokens), t, completionTokens)
	m.usage.mu.Lock()
	c := m.usage.of(label)
	c.PromptTokens += int64(u.PromptTokens)
	c.CompletionTokens += int64(u.CompletionTokens)
	m.usage.mu.Unlock()
	m.chargeTokens(tenant, u)
}

// countTenantWaiting adds n to the jobs of label waiting for reason.
func (m *Manager) countTenantWaiting(label, reason string, n int64) {
	m.usage.waiting.Add(context.Background(), n, metric.WithAttributes(attribute.String("tenant", label), attribute.String("reason", reason)))
}
