package worker

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/chatfleet/chatfleet/manager"
)

// ServiceName is the NATS micro service every worker registers as, so
// `nats micro ls` and `nats micro stats chatfleet-worker` find the fleet.
const ServiceName = "chatfleet-worker"

// Metadata keys of the micro service beside worker and prefix: the model
// a job that names none gets, and the allow-list (comma-separated; empty
// allows any model).
const (
	MetadataModel         = "model"
	MetadataAllowedModels = "allowed_models"
)

// Version is reported by the micro service.
const Version = "0.1.0"

// Status is one worker's state, as `chatfleet status` shows it: returned
// by the worker's status endpoint (<prefix>.status.<worker>) and in the
// micro service's stats.
type Status struct {
	Worker    string                       `json:"worker"`
	Prefix    string                       `json:"prefix"`
	Started   time.Time                    `json:"started"`
	UptimeS   float64                      `json:"uptime_s"`
	Draining  bool                         `json:"draining"`
	InFlight  map[string]int64             `json:"in_flight"` // by role: routing, leader, follower, cache
	Slots     map[string]manager.SlotUsage `json:"slots"`     // requests, waiting, parked, llm, followers
	Leading   int64                        `json:"leading"`   // unique generations led now
	Totals    manager.Stats                `json:"totals"`
	Upstreams manager.UpstreamStats        `json:"upstream"`
	// Routes are every upstream's counters and breaker, the default
	// first.
	Routes []manager.UpstreamStats `json:"upstreams"`
	// Tenants is this worker's usage by tenant since it started, by name:
	// the tenants in the tenants bucket, the rest as manager.OtherTenants.
	Tenants []TenantStatus `json:"tenants"`
	// TenantsRevision is the tenants bucket's revision the worker has
	// applied: a change stored at or before it is in effect here. Nil
	// from workers of earlier versions, which do not say.
	TenantsRevision *uint64 `json:"tenants_revision,omitempty"`
}

// TenantStatus is one tenant's usage on a worker.
type TenantStatus struct {
	Tenant string `json:"tenant"`
	manager.TenantUsage
}

// tenants lists the manager's usage by tenant, by name.
func (w *Worker) tenants() []TenantStatus {
	out := []TenantStatus{} // [] in JSON, never null
	for name, u := range w.mgr.TenantUsage() {
		out = append(out, TenantStatus{Tenant: name, TenantUsage: u})
	}
	slices.SortFunc(out, func(a, b TenantStatus) int { return strings.Compare(a.Tenant, b.Tenant) })
	return out
}

// Tenant returns the usage of tenant (its name, or manager.OtherTenants)
// in st, and whether st has any.
func (st Status) Tenant(tenant string) (manager.TenantUsage, bool) {
	for _, t := range st.Tenants {
		if t.Tenant == tenant {
			return t.TenantUsage, true
		}
	}
	return manager.TenantUsage{}, false
}

// Status returns the worker's state now.
func (w *Worker) Status() Status {
	st := w.mgr.Stats()
	return Status{
		Worker: w.cfg.ID, Prefix: w.cfg.Prefix, Started: w.started, UptimeS: time.Since(w.started).Seconds(),
		Draining: w.draining.Load(), InFlight: w.mgr.InFlight(), Slots: w.mgr.Slots().Usage(),
		Leading: st.Generations, Totals: st, Upstreams: w.mgr.Upstream(), Routes: w.mgr.Upstreams(),
		Tenants: w.tenants(), TenantsRevision: ptr(w.mgr.TenantsRevision()),
	}
}

func ptr[T any](v T) *T { return &v }

// registerService registers the worker as a NATS micro service with a
// status endpoint on a subject of its own.
func (w *Worker) registerService() error {
	svc, err := micro.AddService(w.nc, micro.Config{
		Name:        ServiceName,
		Version:     Version,
		Description: "chatfleet worker: LLM chat jobs from NATS JetStream",
		Metadata: map[string]string{"worker": w.cfg.ID, "prefix": w.cfg.Prefix,
			// What the gateway's /v1/models lists.
			MetadataModel: w.cfg.Manager.DefaultModel, MetadataAllowedModels: strings.Join(w.cfg.Manager.Limits.AllowedModels, ",")},
		StatsHandler: func(*micro.Endpoint) any {
			return w.Status()
		},
	})
	if err != nil {
		return fmt.Errorf("worker: register micro service: %w", err)
	}
	err = svc.AddEndpoint("status", micro.HandlerFunc(func(req micro.Request) {
		_ = req.RespondJSON(w.Status())
	}), micro.WithEndpointSubject(w.cfg.Prefix+".status."+w.cfg.ID))
	if err != nil {
		_ = svc.Stop()
		return fmt.Errorf("worker: add status endpoint: %w", err)
	}
	// Once Start returns, the server knows the service: a ping sent next
	// (a gateway asking whether any worker runs) is answered, not lost
	// before the subscription reached the server.
	if err := w.nc.FlushTimeout(10 * time.Second); err != nil {
		_ = svc.Stop()
		return fmt.Errorf("worker: register micro service: %w", err)
	}
	w.service = svc
	return nil
}
