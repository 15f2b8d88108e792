package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/internal/telemetry"
	"github.com/chatfleet/chatfleet/manager"
	"github.com/chatfleet/chatfleet/topology"
	"github.com/chatfleet/chatfleet/worker"
)

// TestTenantMetrics: /metrics and the worker's status count by tenant only
// the tenants the tenants bucket holds; every other tenant is counted as
// (other), so producers cannot add label values.
func TestTenantMetrics(t *testing.T) {
	t.Parallel()
	tel, err := telemetry.Setup(context.Background(), "chatfleet-worker", "tenant-metrics-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	f := fleettest.New(t, fleettest.Options{})
	ctx := fleettest.Context(t, 30*time.Second)
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	top, err := topology.Ensure(ctx, js, f.Topology)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := top.Tenants.Put(ctx, "acme", []byte(`{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	w := f.StartWorker(func(c *worker.Config) {
		withModel(c)
		c.HTTPAddr = "127.0.0.1:0"
		c.Metrics = tel.Metrics
		c.Manager.MeterProvider = tel.Meter
	})
	for _, tenant := range []string{"acme", "acme", "zed-1", "zed-2"} {
		job := userJob("count me for " + tenant[:3])
		job.Tenant = tenant
		if _, err := f.Pub.Complete(ctx, job); err != nil {
			t.Fatal(err)
		}
	}
	url := "http://" + w.HTTPAddr().String() + "/metrics"
	// Each request is counted once it is settled, just after its reply.
	body := scrapeUntil(t, ctx, url, "the jobs counted", func(body string) bool {
		return strings.Contains(body, `chatfleet_tenant_jobs_total{code="",outcome="done",tenant="(other)"} 2`)
	})
	for _, want := range []string{
		`chatfleet_tenant_jobs_total{code="",outcome="done",tenant="acme"} 2`,
		`chatfleet_tenant_tokens_total{kind="prompt",tenant="acme"}`,
		`chatfleet_tenant_tokens_total{kind="completion",tenant="(other)"}`,
		`chatfleet_tenant_tokens_saved_total{by="cache",tenant="acme"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, `tenant="zed`) {
		t.Errorf("/metrics labels a tenant the bucket does not hold:\n%s", body)
	}
	st := w.Status()
	acme, _ := st.Tenant("acme")
	other, _ := st.Tenant(manager.OtherTenants)
	if acme.Done != 2 || other.Done != 2 || len(st.Tenants) != 2 {
		t.Errorf("status by tenant: %+v", st.Tenants)
	}
}
