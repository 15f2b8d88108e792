package deploytest

import (
	"encoding/json"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/chatfleet/chatfleet/internal/config"
)

var regexpDigits = regexp.MustCompile(`^[0-9]+$`)

// upstreams checks the workers' upstreams: the fleet-wide limits are
// numbers, the upstreams file CHATFLEET_UPSTREAMS names is mounted from
// the chart's ConfigMap and reads as the worker reads it, each key it
// names comes from a mounted Secret or a variable the worker has, never
// the file, and the workers' NetworkPolicy lets every upstream through.
func (c *chartCheck) upstreams(d *appsv1.Deployment, env map[string]string) {
	t := c.t
	for _, v := range []string{"CHATFLEET_FLEET_MAX_LLM_STREAMS", "CHATFLEET_FLEET_REQUESTS_PER_MINUTE", "CHATFLEET_FLEET_TOKENS_PER_MINUTE"} {
		if !regexpDigits.MatchString(env[v]) {
			t.Errorf("%s: %s=%q, want a whole number", d.Name, v, env[v])
		}
	}
	bases := []string{env["CHATFLEET_LLM_BASE_URL"]}
	if file := env["CHATFLEET_UPSTREAMS"]; file != "" {
		bases = append(bases, c.upstreamsFile(d, env, file)...)
	}
	c.upstreamEgress(d, bases)
}

// upstreamsFile checks the upstreams file the workers read and returns
// its base URLs.
func (c *chartCheck) upstreamsFile(d *appsv1.Deployment, env map[string]string, file string) []string {
	t := c.t
	ct := d.Spec.Template.Spec.Containers[0]
	vol, rel := mountedVolume(d, ct, file)
	if vol == nil || vol.ConfigMap == nil {
		t.Errorf("%s: CHATFLEET_UPSTREAMS %s is not in a mounted ConfigMap", d.Name, file)
		return nil
	}
	var text string
	for _, cm := range c.o.configMaps {
		if cm.Name == vol.ConfigMap.Name {
			text = cm.Data[rel]
		}
	}
	if text == "" {
		t.Errorf("%s: CHATFLEET_UPSTREAMS %s: ConfigMap %s has no %s", d.Name, file, vol.ConfigMap.Name, rel)
		return nil
	}
	var f struct {
		Upstreams []map[string]any `json:"upstreams"`
	}
	if err := json.Unmarshal([]byte(text), &f); err != nil {
		t.Fatalf("%s: the upstreams file: %v", d.Name, err)
	}
	// The keys as the worker will find them: each api_key_file in a
	// mounted Secret that has it, each api_key_env set; then the file as
	// the worker reads it, with those keys at paths of this machine.
	dir := t.TempDir()
	var bases []string
	for i, u := range f.Upstreams {
		bases = append(bases, u["base_url"].(string))
		if name, ok := u["api_key_env"].(string); ok {
			if _, set := env[name]; !set {
				t.Errorf("%s: upstream %v's api_key_env %s is not set in the worker", d.Name, u["name"], name)
			}
			delete(u, "api_key_env")
		}
		if keyFile, ok := u["api_key_file"].(string); ok {
			v, key := mountedVolume(d, ct, keyFile)
			if v == nil || v.Secret == nil {
				t.Errorf("%s: upstream %v's api_key_file %s is not in a mounted Secret", d.Name, u["name"], keyFile)
			} else {
				c.secret(d.Name+" upstream key", v.Secret.SecretName, key)
			}
			u["api_key_file"] = filepath.Join(dir, "key"+string(rune('a'+i)))
			if err := os.WriteFile(u["api_key_file"].(string), []byte("placeholder"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	local := filepath.Join(dir, "upstreams.json")
	b, _ := json.Marshal(f)
	if err := os.WriteFile(local, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (config.Env{UpstreamsFile: local}).Upstreams(); err != nil {
		t.Errorf("%s: the worker would refuse the chart's upstreams file: %v", d.Name, err)
	}
	return bases
}

// mountedVolume returns the volume ct mounts at a directory holding file,
// and the file's path inside it; nil when none.
func mountedVolume(d *appsv1.Deployment, ct corev1.Container, file string) (*corev1.Volume, string) {
	for _, m := range ct.VolumeMounts {
		rel, ok := strings.CutPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		for i, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == m.Name {
				return &d.Spec.Template.Spec.Volumes[i], path.Clean(rel)
			}
		}
	}
	return nil, ""
}

// upstreamEgress checks the workers' NetworkPolicy, when there is one,
// lets them reach every upstream's port.
func (c *chartCheck) upstreamEgress(d *appsv1.Deployment, bases []string) {
	for _, np := range c.o.networkPolicies {
		if !subset(np.Spec.PodSelector.MatchLabels, d.Spec.Template.Labels) {
			continue
		}
		for _, base := range bases {
			u, err := url.Parse(base)
			if err != nil {
				c.t.Errorf("%s: upstream %q: %v", d.Name, base, err)
				continue
			}
			port := u.Port()
			if port == "" {
				port = map[string]string{"https": "443", "http": "80"}[u.Scheme]
			}
			if !slices.ContainsFunc(np.Spec.Egress, func(r networkingv1.NetworkPolicyEgressRule) bool {
				return slices.ContainsFunc(r.Ports, func(p networkingv1.NetworkPolicyPort) bool { return p.Port != nil && p.Port.String() == port })
			}) {
				c.t.Errorf("NetworkPolicy %s: the workers cannot reach the upstream %s (port %s)", np.Name, base, port)
			}
		}
	}
}
