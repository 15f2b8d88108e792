package deploytest

import (
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// A key file line for the chart's values: a tenant and the hash of a key
// nobody holds.
const placeholderKeyLine = "default " + "0000000000000000000000000000000000000000000000000000000000000000"

// everythingOn turns every optional part of the chart on, with the chart
// making the Secrets from placeholder values.
const everythingOn = `
imagePullSecrets: [{name: registry}]
fleet:
  CHATFLEET_PREFIX: acme.chat
  CHATFLEET_REPLICAS: "3"
  CHATFLEET_LOG_FORMAT: json
  CHATFLEET_QUEUE_TIMEOUT: 2m
nats:
  credentials: {user: chatfleet, password: placeholder-not-a-password, filesSecret: nats-files}
  tls: {secret: nats-tls, clientCertificate: true}
otel: {endpoint: "http://otel-collector.monitoring:4318"}
upstream:
  apiKey: placeholder-not-a-key
  fleetLimits: {maxStreams: 50, requestsPerMinute: 3000, tokensPerMinute: 2000000}
upstreams:
  keysSecret: chatfleet-upstream-keys
  list:
    - {name: vllm-a, base_url: "http://vllm-a:8000/v1", models: [llama-70b], weight: 2, max_streams: 32}
    - {name: vllm-b, base_url: "http://vllm-b:8001/v1", models: [llama-70b], max_streams: 16}
    - name: fallback
      base_url: https://api.example.com/v1
      api_key_file: /etc/chatfleet/upstream-keys/fallback
      models: [llama-70b]
      requests_per_minute: 600
operators:
  natsCredentials: {envSecret: chatfleet-operators-nats, filesSecret: chatfleet-operators-nkey}
worker:
  envFromSecrets: [chatfleet-upstreams]
  antiAffinity: hard
  podAnnotations: {example.com/team: llm}
  nodeSelector: {kubernetes.io/arch: amd64}
  tolerations: [{key: dedicated, operator: Equal, value: llm, effect: NoSchedule}]
gateway:
  keys: {kv: false, lines: "` + placeholderKeyLine + `"}
  service: {type: LoadBalancer, annotations: {example.com/lb: internal}}
  podAnnotations: {example.com/team: api}
  env: {CHATFLEET_GATEWAY_CORS_ORIGINS: "https://app.example.com"}
serviceMonitor: {enabled: true, labels: {release: prometheus}}
networkPolicy:
  enabled: true
  nats: {namespaceSelector: {kubernetes.io/metadata.name: nats}}
  gatewayFrom: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: apps}}}]
  toolServers:
    podSelector: {app: weather-tools}
    toolEgress: [{ports: [{port: 443, protocol: TCP}]}]
autoscaling:
  keda:
    enabled: true
    queueWaiting: {enabled: true}
    extraTriggers:
      - type: prometheus
        metadata:
          serverAddress: http://prometheus-operated.monitoring.svc:9090
          query: sum(chatfleet_requests_in_flight{role="leader"})
          threshold: "8"
`

// everythingOnSecrets are the Secrets everythingOn names: files the chart
// cannot make from values.
var everythingOnSecrets = []string{"nats-files", "nats-tls", "chatfleet-operators-nats", "chatfleet-operators-nkey", "chatfleet-upstreams", "chatfleet-upstream-keys"}

// chartCases are the renders every check runs on: the defaults, every
// optional part on (with KEDA, then with an HPA instead), and every
// Secret made beforehand (existing names the chart must not make).
func chartCases(t *testing.T) []chartCase {
	hpa := values(t, everythingOn)
	hpa["autoscaling"] = values(t, "hpa: {enabled: true}")
	return []chartCase{
		{name: "defaults"},
		{name: "everything on, KEDA", values: values(t, everythingOn), existing: everythingOnSecrets},
		{name: "everything on, HPA", values: hpa, existing: everythingOnSecrets},
		{name: "existing secrets", values: values(t, `
nats:
  credentials: {envSecret: chatfleet-nats}
upstream: {existingSecret: llm-key, existingSecretKey: api-key}
worker:
  natsCredentials: {envSecret: chatfleet-workers-nats, filesSecret: chatfleet-workers-nkey}
gateway:
  keys: {kv: false, existingSecret: gateway-keys}
  resumeSecret: {existingSecret: gateway-resume}
`), existing: []string{"chatfleet-nats", "llm-key", "chatfleet-workers-nats", "chatfleet-workers-nkey", "gateway-keys", "gateway-resume"}},
		{name: "chatfleet auth's identities", values: values(t, identityValues), existing: identitySecrets},
	}
}

// identityValues give each process its own identity from chatfleet
// auth, a Secret each made from its settings file (deploy/README.md:
// Security).
const identityValues = `
worker: {natsCredentials: {envSecret: chatfleet-workers-nats}}
gateway: {natsCredentials: {envSecret: chatfleet-gateway-nats}}
operators: {natsCredentials: {envSecret: chatfleet-operators-nats}}
`

var identitySecrets = []string{"chatfleet-workers-nats", "chatfleet-gateway-nats", "chatfleet-operators-nats"}

// chartCase is one render: values over the defaults, and the Secrets they
// name that exist beforehand.
type chartCase struct {
	name     string
	values   map[string]any
	existing []string
}

// TestChart renders the chart for each case, decodes every object into
// its Kubernetes type and checks what must hold for the fleet to run.
func TestChart(t *testing.T) {
	for _, c := range chartCases(t) {
		t.Run(c.name, func(t *testing.T) {
			o := decodeObjects(t, renderChart(t, c.values))
			checkChart(t, o, c.existing, nil)
		})
	}
}

// TestChartNotes: what helm prints after an install says what is left to
// do: the workers' identity when none is named, an API key in the
// bucket, or a key file when the gateway reads one.
func TestChartNotes(t *testing.T) {
	for _, c := range []struct {
		values      string
		want, never []string
	}{
		{"", []string{"log in to NATS with no credentials", "gateway key --kv TENANT"}, nil},
		{identityValues, []string{"gateway key --kv TENANT"}, []string{"no credentials"}},
		{"gateway: {keys: {kv: false}}", []string{"every request is a 401"}, []string{"--kv"}},
	} {
		files, err := renderFiles(t, values(t, c.values))
		if err != nil {
			t.Fatal(err)
		}
		notes := files["chatfleet/templates/NOTES.txt"]
		for _, w := range c.want {
			if !strings.Contains(notes, w) {
				t.Errorf("values %q: NOTES.txt does not say %q:\n%s", c.values, w, notes)
			}
		}
		for _, n := range c.never {
			if strings.Contains(notes, n) {
				t.Errorf("values %q: NOTES.txt says %q:\n%s", c.values, n, notes)
			}
		}
	}
}

// TestChartRefusesConflicts: settings the chart could not honour fail the
// render with a message instead of a fleet that misbehaves.
func TestChartRefusesConflicts(t *testing.T) {
	for _, c := range []struct{ values, want string }{
		{"autoscaling: {keda: {enabled: true}, hpa: {enabled: true}}", "not both"},
		{"fleet: {CHATFLEET_SHUTDOWN_GRACE: 60s}", "shutdownGraceSeconds"},
		{"worker: {antiAffinity: sometimes}", "soft, hard or none"},
		{"autoscaling: {keda: {queueLag: {enabled: true}}}", "queueWaiting"},
		{"autoscaling: {hpa: {generationsPerWorker: 12}}", "demandPerWorker"},
		{"upstreams: {list: [{name: a, base_url: 'http://a/v1', models: [m], api_key: sk-x}]}", "keysSecret"},
	} {
		_, err := tryRender(t, values(t, c.values))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: render error %v, want one saying %q", c.values, err, c.want)
		}
	}
}

// TestChartRunsAFleet runs the gateway's init container, a worker and a
// gateway with the environments and probes the chart gives them (the
// defaults, each process with its identity's Secret made from chatfleet
// auth's settings files) on a NATS cluster running auth's configuration,
// and checks every metric the autoscalers of every case read is one the
// worker exports.
func TestChartRunsAFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("runs chatfleet processes on a NATS cluster: skipped under -short")
	}
	var scaledOn []string
	for _, c := range chartCases(t) {
		scaledOn = append(scaledOn, checkChart(t, decodeObjects(t, renderChart(t, c.values)), c.existing, nil).metrics...)
	}
	var v map[string]any
	if err := yaml.Unmarshal(readRepoFile(t, "deploy", "helm", "chatfleet", "values.yaml"), &v); err != nil {
		t.Fatal(err)
	}
	a := generateAuth(t, v["fleet"].(map[string]any)["CHATFLEET_PREFIX"].(string), filepath.Join(t.TempDir(), "auth.conf"))
	given := map[string]map[string]string{}
	for i, id := range []string{workersIdentity, gatewayIdentity, operatorsIdentity} {
		given[identitySecrets[i]] = a.settings(t, id) // kubectl create secret generic … --from-env-file
	}
	found := checkChart(t, decodeObjects(t, renderChart(t, values(t, identityValues))), nil, given)
	if !found.initTopology {
		t.Fatal("the gateway runs no chatfleet init before it starts")
	}
	metrics := runFleet(t, fleetRun{natsConf: a.conf, worker: found.worker, gateway: found.gateway,
		initTopology: true, operators: found.gatewayInit.env})
	for _, name := range slices.Compact(slices.Sorted(slices.Values(scaledOn))) {
		if !regexp.MustCompile(`(?m)^` + name + `[{ ]`).MatchString(metrics) {
			t.Errorf("the autoscaler reads %s, which the worker does not export", name)
		}
	}
}
