package deploytest

import (
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"sigs.k8s.io/yaml"
)

// The ports the third-party images listen on by default: no registry can
// be reached here, so these are taken from their documentation, not run.
const (
	prometheusPort  = "9090"  // prom/prometheus
	jaegerOTLPGRPC  = "4317"  // jaegertracing/jaeger 2.x
	jaegerUIPort    = "16686" // jaegertracing/jaeger 2.x
	grafanaPort     = "3000"  // grafana/grafana
	dashboardSource = "../grafana/chatfleet.json"
)

// prometheusConfig is the part of Prometheus's configuration compose's
// file uses, decoded strictly.
type prometheusConfig struct {
	Global struct {
		ScrapeInterval string `json:"scrape_interval"`
	} `json:"global"`
	ScrapeConfigs []struct {
		JobName      string `json:"job_name"`
		DNSSDConfigs []struct {
			Names []string `json:"names"`
			Type  string   `json:"type"`
			Port  int      `json:"port"`
		} `json:"dns_sd_configs"`
		StaticConfigs []struct {
			Targets []string `json:"targets"`
		} `json:"static_configs"`
	} `json:"scrape_configs"`
}

// collectorConfig is the part of the OpenTelemetry collector's
// configuration compose's file uses, decoded strictly.
type collectorConfig struct {
	Receivers struct {
		OTLP struct {
			Protocols struct {
				HTTP struct {
					Endpoint string `json:"endpoint"`
				} `json:"http"`
			} `json:"protocols"`
		} `json:"otlp"`
	} `json:"receivers"`
	Processors map[string]struct{} `json:"processors"`
	Exporters  map[string]struct {
		Endpoint string `json:"endpoint"`
		TLS      struct {
			Insecure bool `json:"insecure"`
		} `json:"tls"`
	} `json:"exporters"`
	Service struct {
		Pipelines map[string]struct {
			Receivers  []string `json:"receivers"`
			Processors []string `json:"processors"`
			Exporters  []string `json:"exporters"`
		} `json:"pipelines"`
	} `json:"service"`
}

// grafanaProvisioning is Grafana's datasource and dashboard provisioning,
// decoded strictly.
type grafanaProvisioning struct {
	APIVersion  int                 `json:"apiVersion"`
	Datasources []grafanaDatasource `json:"datasources"`
	Providers   []struct {
		Name    string `json:"name"`
		Type    string `json:"type"`
		Options struct {
			Path string `json:"path"`
		} `json:"options"`
	} `json:"providers"`
}

type grafanaDatasource struct {
	Name      string `json:"name"`
	Type      string `json:"type"`
	UID       string `json:"uid"`
	Access    string `json:"access"`
	URL       string `json:"url"`
	IsDefault bool   `json:"isDefault"`
}

// decodeMounted strictly decodes the file a service mounts at target.
func decodeMounted(t *testing.T, s types.ServiceConfig, target string, v any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(mustRead(t, mount(t, s, target)), v); err != nil {
		t.Fatalf("%s's %s: %v", s.Name, target, err)
	}
}

// checkComposeObservability: Prometheus scrapes the worker and gateway
// services on the port of CHATFLEET_HTTP_ADDR; spans go to the collector's
// OTLP/HTTP receiver and on to Jaeger; Grafana reads Prometheus and Jaeger
// and loads the dashboard.
func checkComposeObservability(t *testing.T, p *types.Project, cf map[string]types.ServiceConfig) {
	t.Helper()
	var prom prometheusConfig
	decodeMounted(t, service(t, p, "prometheus"), "/etc/prometheus/prometheus.yml", &prom)
	var scraped []string
	for _, sc := range prom.ScrapeConfigs {
		for _, d := range sc.DNSSDConfigs {
			for _, n := range d.Names {
				scraped = append(scraped, n+":"+strconv.Itoa(d.Port))
			}
		}
		for _, s := range sc.StaticConfigs {
			scraped = append(scraped, s.Targets...)
		}
	}
	for _, cmd := range []string{"worker", "gateway"} {
		s := cf[cmd]
		want := s.Name + ":" + portOf(t, composeEnv(t, s)["CHATFLEET_HTTP_ADDR"])
		if !slices.Contains(scraped, want) {
			t.Errorf("Prometheus scrapes %v, not %s", scraped, want)
		}
	}

	collector := service(t, p, "otel-collector")
	var col collectorConfig
	decodeMounted(t, collector, "/etc/otelcol/config.yaml", &col)
	_, receiverPort := hostPort(t, col.Receivers.OTLP.Protocols.HTTP.Endpoint)
	for _, cmd := range []string{"worker", "gateway"} {
		u, err := url.Parse(composeEnv(t, cf[cmd])["OTEL_EXPORTER_OTLP_ENDPOINT"])
		if err != nil || u.Hostname() != collector.Name || u.Port() != receiverPort {
			t.Errorf("%s sends spans to %v, not the collector's OTLP/HTTP receiver %s:%s", cmd, u, collector.Name, receiverPort)
		}
	}
	traces := col.Service.Pipelines["traces"]
	if !slices.Contains(traces.Receivers, "otlp") || len(traces.Exporters) != 1 {
		t.Fatalf("the collector's traces pipeline: %+v", traces)
	}
	exp := col.Exporters[traces.Exporters[0]]
	if h, port := hostPort(t, exp.Endpoint); h != service(t, p, "jaeger").Name || port != jaegerOTLPGRPC {
		t.Errorf("the collector exports to %s, not Jaeger's OTLP/gRPC port", exp.Endpoint)
	}
	checkGrafana(t, p)
}

// checkGrafana: the data sources name the Prometheus and Jaeger services
// on their ports, and the dashboard is mounted where the provider looks.
func checkGrafana(t *testing.T, p *types.Project) {
	t.Helper()
	g := service(t, p, "grafana")
	var ds, dash grafanaProvisioning
	decodeMounted(t, g, "/etc/grafana/provisioning/datasources/datasources.yaml", &ds)
	decodeMounted(t, g, "/etc/grafana/provisioning/dashboards/dashboards.yaml", &dash)
	want := map[string]string{"prometheus": "http://prometheus:" + prometheusPort, "jaeger": "http://jaeger:" + jaegerUIPort}
	for _, d := range ds.Datasources {
		if want[d.Type] != d.URL {
			t.Errorf("Grafana's %s data source is at %s, want %s", d.Type, d.URL, want[d.Type])
		}
		delete(want, d.Type)
	}
	if len(want) > 0 {
		t.Errorf("Grafana lacks data sources %v", want)
	}
	if len(dash.Providers) != 1 {
		t.Fatalf("Grafana's dashboard providers: %+v", dash.Providers)
	}
	file := mount(t, g, dash.Providers[0].Options.Path+"/chatfleet.json")
	if rel := mustAbs(t, file); rel != mustAbs(t, repoPath("deploy", "compose", dashboardSource)) {
		t.Errorf("Grafana loads %s, not the chatfleet dashboard", file)
	}
	if !slices.ContainsFunc(g.Ports, func(pc types.ServicePortConfig) bool { return strconv.Itoa(int(pc.Target)) == grafanaPort }) {
		t.Errorf("Grafana's port %s is not published", grafanaPort)
	}
	defaultPrometheus := slices.ContainsFunc(ds.Datasources, func(d grafanaDatasource) bool { return d.Type == "prometheus" && d.IsDefault })
	checkDashboardSources(t, mustRead(t, file), defaultPrometheus)
}

// checkDashboardSources: every panel of the dashboard queries through its
// datasource variable, a Prometheus source, which picks the default one
// when nobody chose (a provisioned dashboard cannot ask for its inputs);
// the provisioning has a default Prometheus.
func checkDashboardSources(t *testing.T, dashboard []byte, defaultPrometheus bool) {
	t.Helper()
	var d struct {
		Templating struct {
			List []struct{ Name, Type, Query string } `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Title      string                      `json:"title"`
			Datasource *struct{ Type, UID string } `json:"datasource"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(dashboard, &d); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		if v.Type == "datasource" {
			vars["${"+v.Name+"}"] = v.Query
		}
	}
	for _, p := range d.Panels {
		if p.Datasource == nil || vars[p.Datasource.UID] != "prometheus" {
			t.Errorf("dashboard panel %q queries %+v, not a Prometheus datasource variable", p.Title, p.Datasource)
		}
	}
	if len(d.Panels) == 0 || !defaultPrometheus {
		t.Errorf("the dashboard has %d panels; Grafana has a default Prometheus: %v", len(d.Panels), defaultPrometheus)
	}
}
