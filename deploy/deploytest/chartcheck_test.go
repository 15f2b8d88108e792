package deploytest

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// handBack is how long a worker may take, past CHATFLEET_SHUTDOWN_GRACE,
// to hand its remaining jobs back (README: Running a fleet).
const handBack = 10 * time.Second

// chartFindings is what checkChart learnt: the worker's and the gateway's
// containers as deployed, the gateway's chatfleet init when it runs one,
// and the metrics the autoscalers read.
type chartFindings struct {
	worker, gateway deployed
	gatewayInit     deployed
	initTopology    bool
	metrics         []string
}

// checkChart checks a render's objects against each other and against
// what the binaries serve and read. existing are the Secrets the values
// name that the chart does not make; given are Secrets made beforehand
// with their keys and values.
func checkChart(t *testing.T, o objects, existing []string, given map[string]map[string]string) chartFindings {
	t.Helper()
	c := &chartCheck{t: t, o: o, existing: slices.Concat(existing, slices.Collect(maps.Keys(given))), secrets: map[string]map[string]string{}}
	maps.Copy(c.secrets, given)
	for _, s := range o.secrets {
		keys := maps.Clone(s.StringData)
		if keys == nil {
			keys = map[string]string{}
		}
		for k, v := range s.Data {
			keys[k] = string(v)
		}
		c.secrets[s.Name] = keys
	}
	var f chartFindings
	for _, d := range o.deployments {
		switch d.Spec.Template.Spec.Containers[0].Name {
		case "worker":
			f.worker = c.deployment(d, handBack)
			c.antiAffinity(d)
			c.upstreams(d, f.worker.env)
		case "gateway":
			f.gateway = c.deployment(d, 0)
			for _, ic := range d.Spec.Template.Spec.InitContainers {
				if slices.Equal(ic.Args, []string{"init"}) {
					f.gatewayInit, f.initTopology = c.container(d.Name, ic), true
				}
			}
		default:
			t.Errorf("deployment %s runs %s", d.Name, d.Spec.Template.Spec.Containers[0].Name)
		}
	}
	if f.worker.env == nil {
		t.Fatal("no worker Deployment")
	}
	c.services()
	c.selectors()
	f.metrics = c.autoscalers(f.worker)
	c.serviceMonitors()
	return f
}

type chartCheck struct {
	t        *testing.T
	o        objects
	existing []string
	secrets  map[string]map[string]string // the chart's own Secrets: name → key → value
}

// secret checks a Secret reference resolves: one the chart makes (with
// key, when given) or one the values say exists. It returns the value.
func (c *chartCheck) secret(where, name, key string) string {
	if keys, ok := c.secrets[name]; ok {
		v, ok := keys[key]
		if key != "" && !ok {
			c.t.Errorf("%s: the chart's Secret %s has no key %s", where, name, key)
		}
		return v
	}
	if !slices.Contains(c.existing, name) {
		c.t.Errorf("%s: Secret %s is neither made by the chart nor named in the values", where, name)
	}
	return "from-" + name
}

// deployment checks a Deployment's pods and returns its main container as
// deployed. extraGrace is how long the process may run past its shutdown
// grace.
func (c *chartCheck) deployment(d *appsv1.Deployment, extraGrace time.Duration) deployed {
	t := c.t
	pod := d.Spec.Template.Spec
	if !subset(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		t.Errorf("%s: the selector %v does not select its pods %v", d.Name, d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
	}
	for _, v := range pod.Volumes {
		if v.Secret != nil {
			c.secret(d.Name+" volume "+v.Name, v.Secret.SecretName, "")
		}
	}
	for _, ic := range pod.InitContainers {
		c.container(d.Name, ic)
	}
	main := c.container(d.Name, pod.Containers[0])
	grace, err := time.ParseDuration(main.env["CHATFLEET_SHUTDOWN_GRACE"])
	if err != nil {
		t.Errorf("%s: CHATFLEET_SHUTDOWN_GRACE: %v", d.Name, err)
	}
	if tgp := pod.TerminationGracePeriodSeconds; tgp == nil || time.Duration(*tgp)*time.Second <= grace+extraGrace {
		t.Errorf("%s: terminationGracePeriodSeconds %v, want more than CHATFLEET_SHUTDOWN_GRACE %s + %s", d.Name, tgp, grace, extraGrace)
	}
	c.memoryLimit(d.Name, pod.Containers[0], main.env["GOMEMLIMIT"])
	return main
}

// container checks a container's environment and probes and returns it
// as deployed, values resolved.
func (c *chartCheck) container(where string, ct corev1.Container) deployed {
	t := c.t
	where += "/" + ct.Name
	env := map[string]string{}
	for _, from := range ct.EnvFrom {
		if from.SecretRef == nil {
			t.Errorf("%s: envFrom %v: only Secrets are expected", where, from)
			continue
		}
		name := from.SecretRef.Name
		c.secret(where, name, "")
		for k, v := range c.secrets[name] {
			checkVariable(t, where+" (Secret "+name+")", k)
			env[k] = v
		}
	}
	fromSecrets := maps.Clone(env)
	for _, e := range ct.Env {
		checkVariable(t, where, e.Name)
		if _, dup := env[e.Name]; dup && !(e.ValueFrom == nil && fromSecrets[e.Name] == e.Value) {
			// env wins over envFrom: a Secret's CHATFLEET_PREFIX that
			// differs would be a user of another fleet's account.
			t.Errorf("%s sets %s twice, differently", where, e.Name)
		}
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = c.secret(where+" "+e.Name, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
		case e.ValueFrom.FieldRef != nil:
			env[e.Name] = "pod-" + strings.ReplaceAll(e.ValueFrom.FieldRef.FieldPath, ".", "-")
		default:
			t.Errorf("%s: %s comes from %v", where, e.Name, e.ValueFrom)
		}
	}
	return deployed{env: env, probes: c.probes(where, ct, env)}
}

// probes checks every probe of ct targets a port the process listens on:
// the port of CHATFLEET_HTTP_ADDR (health, readiness, metrics) or of
// CHATFLEET_GATEWAY_ADDR (the API).
func (c *chartCheck) probes(where string, ct corev1.Container, env map[string]string) []probe {
	t := c.t
	var out []probe
	for kind, p := range map[string]*corev1.Probe{"liveness": ct.LivenessProbe, "readiness": ct.ReadinessProbe} {
		if p == nil {
			if len(ct.Ports) > 0 { // a server, not a one-shot init container
				t.Errorf("%s has no %s probe", where, kind)
			}
			continue
		}
		var port intstr.IntOrString
		var pr probe
		switch {
		case p.HTTPGet != nil:
			port, pr.path = p.HTTPGet.Port, p.HTTPGet.Path
		case p.TCPSocket != nil:
			port = p.TCPSocket.Port
		default:
			t.Errorf("%s: the %s probe is neither HTTP nor TCP", where, kind)
			continue
		}
		number := containerPort(ct, port)
		for _, v := range []string{"CHATFLEET_HTTP_ADDR", "CHATFLEET_GATEWAY_ADDR"} {
			if addr, ok := env[v]; ok && number != 0 && portOf(t, addr) == strconv.Itoa(number) {
				pr.portVar = v
			}
		}
		if pr.portVar == "" {
			t.Errorf("%s: the %s probe's port %s (%d) is not the port of CHATFLEET_HTTP_ADDR or CHATFLEET_GATEWAY_ADDR", where, kind, port.String(), number)
		}
		out = append(out, pr)
	}
	slices.SortFunc(out, func(a, b probe) int { return strings.Compare(a.path, b.path) })
	return out
}

// containerPort resolves a named or numbered port of ct; 0 when it has
// no such port.
func containerPort(ct corev1.Container, port intstr.IntOrString) int {
	for _, p := range ct.Ports {
		if port.Type == intstr.String && p.Name == port.StrVal || port.Type == intstr.Int && p.ContainerPort == port.IntVal {
			return int(p.ContainerPort)
		}
	}
	return 0
}

// memoryLimit checks GOMEMLIMIT is set below the container's memory
// limit, so the collector works harder before the kernel kills the pod.
func (c *chartCheck) memoryLimit(where string, ct corev1.Container, goMemLimit string) {
	limit, ok := ct.Resources.Limits[corev1.ResourceMemory]
	if !ok {
		c.t.Errorf("%s has no memory limit", where)
		return
	}
	soft, err := parseGoBytes(goMemLimit)
	if err != nil {
		c.t.Errorf("%s: GOMEMLIMIT: %v", where, err)
		return
	}
	if soft >= limit.Value() {
		c.t.Errorf("%s: GOMEMLIMIT %s is not below the memory limit %s", where, goMemLimit, limit.String())
	}
}

var goBytes = regexp.MustCompile(`^([0-9]+)(B|KiB|MiB|GiB|TiB)?$`)

// parseGoBytes reads a GOMEMLIMIT value as the Go runtime does.
func parseGoBytes(s string) (int64, error) {
	m := goBytes.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a number of bytes with B, KiB, MiB, GiB or TiB", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	shift := map[string]uint{"": 0, "B": 0, "KiB": 10, "MiB": 20, "GiB": 30, "TiB": 40}[m[2]]
	return n << shift, err
}

// antiAffinity checks the workers are spread over nodes.
func (c *chartCheck) antiAffinity(d *appsv1.Deployment) {
	a := d.Spec.Template.Spec.Affinity
	if a == nil || a.PodAntiAffinity == nil {
		c.t.Errorf("%s: no pod anti-affinity", d.Name)
	}
}

// pods returns the Deployment whose pods labels selects, or nil.
func (c *chartCheck) pods(labels map[string]string) *appsv1.Deployment {
	for _, d := range c.o.deployments {
		if len(labels) > 0 && subset(labels, d.Spec.Template.Labels) {
			return d
		}
	}
	return nil
}

// services checks each Service selects pods that have its target ports.
func (c *chartCheck) services() {
	for _, s := range c.o.services {
		d := c.pods(s.Spec.Selector)
		if d == nil {
			c.t.Errorf("Service %s selects no pods", s.Name)
			continue
		}
		for _, p := range s.Spec.Ports {
			if containerPort(d.Spec.Template.Spec.Containers[0], p.TargetPort) == 0 {
				c.t.Errorf("Service %s: target port %s is not a port of %s's pods", s.Name, p.TargetPort.String(), d.Name)
			}
		}
	}
}

// selectors checks PodDisruptionBudgets and NetworkPolicies select pods,
// and the policies' named ports exist on them.
func (c *chartCheck) selectors() {
	for _, p := range c.o.pdbs {
		if c.pods(p.Spec.Selector.MatchLabels) == nil {
			c.t.Errorf("PodDisruptionBudget %s selects no pods", p.Name)
		}
	}
	for _, np := range c.o.networkPolicies {
		if np.Labels["app.kubernetes.io/component"] == "tools" {
			continue // the operator's own tool servers, not the chart's pods
		}
		d := c.pods(np.Spec.PodSelector.MatchLabels)
		if d == nil {
			c.t.Errorf("NetworkPolicy %s selects no pods", np.Name)
			continue
		}
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				if p.Port != nil && containerPort(d.Spec.Template.Spec.Containers[0], *p.Port) == 0 {
					c.t.Errorf("NetworkPolicy %s admits port %s, which %s's pods do not have", np.Name, p.Port.String(), d.Name)
				}
			}
		}
	}
}

var metricName = regexp.MustCompile(`chatfleet_[a-z_]+`)

// The workers' autoscaling signals (README: Metrics): the demand more
// workers would serve sooner, and the jobs nobody has pulled, which only
// the worker that maintains the fleet reports.
const (
	demandMetric       = "chatfleet_scaling_demand"
	queueWaitingMetric = "chatfleet_queue_waiting"
)

// autoscalers checks the ScaledObject and the HPA scale the workers on
// the workers' own metrics — the chart's own trigger on the cap-aware
// demand, per worker within its upstream slots — and returns the metric
// names they read.
func (c *chartCheck) autoscalers(worker deployed) []string {
	t := c.t
	workerName := c.pods(map[string]string{"app.kubernetes.io/component": "worker"}).Name
	slots, _ := strconv.Atoi(worker.env["CHATFLEET_MAX_CONCURRENT_LLM_STREAMS"])
	var names []string
	for _, so := range c.o.scaledObjects {
		if so.Spec.ScaleTargetRef == nil || so.Spec.ScaleTargetRef.Name != workerName {
			t.Errorf("ScaledObject %s does not scale %s", so.Name, workerName)
		}
		for i, tr := range so.Spec.Triggers {
			if tr.Type != "prometheus" {
				t.Errorf("ScaledObject %s: trigger %s", so.Name, tr.Type)
				continue
			}
			query := tr.Metadata["query"]
			read := metricName.FindAllString(query, -1)
			names = append(names, read...)
			if i == 0 && !slices.Equal(read, []string{demandMetric}) {
				t.Errorf("ScaledObject %s scales first on %q, want %s: more workers do not help work waiting at the fleet's cap", so.Name, query, demandMetric)
			}
			threshold, err := strconv.Atoi(tr.Metadata["threshold"])
			switch {
			case err != nil || threshold <= 0:
				t.Errorf("ScaledObject %s: threshold %q, want a positive number", so.Name, tr.Metadata["threshold"])
			case slices.Contains(read, queueWaitingMetric):
				if !strings.HasPrefix(query, "max(") {
					t.Errorf("ScaledObject %s: %q: one worker reports %s, and a handover may leave two: take the max", so.Name, query, queueWaitingMetric)
				}
			case threshold > slots:
				t.Errorf("ScaledObject %s: threshold %d, want generations per worker within its %d upstream slots", so.Name, threshold, slots)
			}
		}
	}
	for _, h := range c.o.hpas {
		if h.Spec.ScaleTargetRef.Name != workerName {
			t.Errorf("HPA %s does not scale %s", h.Name, workerName)
		}
		for _, m := range h.Spec.Metrics {
			if m.Pods == nil {
				t.Errorf("HPA %s scales on a %s metric, not the workers' own", h.Name, m.Type)
				continue
			}
			names = append(names, m.Pods.Metric.Name)
			if target := m.Pods.Target.AverageValue; target == nil || target.Value() <= 0 || target.Value() > int64(slots) {
				t.Errorf("HPA %s: target %v, want generations per worker within its %d upstream slots", h.Name, target, slots)
			}
		}
	}
	if len(c.o.scaledObjects)+len(c.o.hpas) > 1 {
		t.Error("more than one autoscaler for the workers")
	}
	return names
}

// serviceMonitors checks the ServiceMonitor scrapes /metrics on the port
// of the workers' and the gateway's metrics Services.
func (c *chartCheck) serviceMonitors() {
	for _, sm := range c.o.serviceMonitors {
		var scraped []string
		for _, s := range c.o.services {
			if !subset(sm.Spec.Selector.MatchLabels, s.Labels) {
				continue
			}
			scraped = append(scraped, s.Labels["app.kubernetes.io/component"])
			for _, ep := range sm.Spec.Endpoints {
				if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
					c.t.Errorf("ServiceMonitor %s scrapes port %s, which Service %s lacks", sm.Name, ep.Port, s.Name)
				}
				if ep.Path != "/metrics" {
					c.t.Errorf("ServiceMonitor %s scrapes %s", sm.Name, ep.Path)
				}
			}
		}
		slices.Sort(scraped)
		if want := []string{"gateway", "worker"}; !slices.Equal(scraped, want) {
			c.t.Errorf("ServiceMonitor %s scrapes the Services of %v, want %v", sm.Name, scraped, want)
		}
	}
}

// subset reports whether every label of sel is in labels.
func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}
