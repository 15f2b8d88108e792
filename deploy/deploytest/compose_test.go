package deploytest

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// loadCompose loads deploy/compose/compose.yaml with the compose-spec
// library (validated against the compose schema), variables at their
// defaults, every profile on. The env_files are not read: chatfleet auth
// writes them at install (composeSettings reads them).
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	dir := repoPath("deploy", "compose")
	opts, err := cli.NewProjectOptions([]string{filepath.Join(dir, "compose.yaml")},
		cli.WithWorkingDirectory(dir), cli.WithEnv(nil), cli.WithInterpolation(true),
		cli.WithoutEnvironmentResolution, cli.WithProfiles([]string{"*"}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// composeEnv is a service's environment (compose.yaml's, without its
// env_file) with every variable set.
func composeEnv(t *testing.T, s types.ServiceConfig) map[string]string {
	t.Helper()
	env := map[string]string{}
	for k, v := range s.Environment {
		if v == nil {
			t.Errorf("%s: %s has no value", s.Name, k)
			continue
		}
		env[k] = *v
	}
	return env
}

// service returns the project's service name, failing t without one.
func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// chatfleetServices are the services that run the chatfleet image, by
// command.
func chatfleetServices(t *testing.T, p *types.Project) map[string]types.ServiceConfig {
	t.Helper()
	out := map[string]types.ServiceConfig{}
	for _, s := range p.Services {
		if strings.HasPrefix(s.Image, "chatfleet:") {
			if len(s.Command) != 1 {
				t.Fatalf("%s runs chatfleet %v, want one command", s.Name, s.Command)
			}
			out[s.Command[0]] = s
		}
	}
	for _, want := range []string{"worker", "gateway", "simulate", "status"} {
		if _, ok := out[want]; !ok {
			t.Fatalf("no service runs chatfleet %s", want)
		}
	}
	return out
}

// TestCompose checks the compose file against the binaries and its other
// files: every chatfleet variable known, every address naming a service
// and the port it listens on, grace periods longer than the shutdown
// grace, published ports on loopback, pinned images, mounted files that
// exist.
func TestCompose(t *testing.T) {
	p := loadCompose(t)
	cf := chatfleetServices(t, p)
	for _, s := range cf {
		env := composeEnv(t, s)
		for k := range env {
			checkVariable(t, "compose service "+s.Name, k)
		}
	}
	if s := cf["worker"]; s.GetScale() < 2 {
		t.Errorf("compose runs %d workers, want 2 or more", s.GetScale())
	}
	for _, s := range cf {
		if b := s.Build; b == nil || filepath.Clean(b.Context) != filepath.Clean(mustAbs(t, repoPath())) || b.Dockerfile != "Dockerfile" {
			t.Errorf("%s's image is not built from the repository's Dockerfile: %+v", s.Name, b)
		}
		if !s.ReadOnly {
			t.Errorf("%s's file system is writable (TestContainers runs chatfleet read-only)", s.Name)
		}
	}
	checkComposeNATS(t, p, cf)
	checkComposeIdentities(t, cf)
	checkComposeGrace(t, cf)
	checkComposeUpstream(t, p, cf["worker"])
	checkComposeUpstreams(t, p, cf)
	checkComposeGateway(t, p, cf["gateway"])
	checkComposeObservability(t, p, cf)
	checkComposeImages(t, p)
	checkComposeMounts(t, p)
}

// checkComposeNATS: the processes reach the three NATS services on the
// client port nats.conf sets, with one replica per server.
func checkComposeNATS(t *testing.T, p *types.Project, cf map[string]types.ServiceConfig) {
	t.Helper()
	conf := composeNATSConfig(t, p, composeAuth(t, cf).natsDir)
	for _, s := range cf {
		env := composeEnv(t, s)
		if s.Command[0] == "simulate" {
			continue
		}
		var hosts []string
		for _, u := range strings.Split(env["CHATFLEET_NATS_URL"], ",") {
			parsed, err := url.Parse(u)
			if err != nil || parsed.Port() != fmt.Sprint(conf.Port) {
				t.Errorf("%s: CHATFLEET_NATS_URL %s: not the client port %d of nats.conf", s.Name, u, conf.Port)
				continue
			}
			hosts = append(hosts, parsed.Hostname())
		}
		if !slices.Equal(hosts, natsServiceNames) {
			t.Errorf("%s reaches NATS at %v, want %v", s.Name, hosts, natsServiceNames)
		}
		if env["CHATFLEET_REPLICAS"] != fmt.Sprint(len(natsServiceNames)) {
			t.Errorf("%s: CHATFLEET_REPLICAS=%s on %d NATS servers", s.Name, env["CHATFLEET_REPLICAS"], len(natsServiceNames))
		}
	}
}

// checkComposeGrace: compose waits longer than the shutdown grace (plus
// the workers' hand-back) before it kills a process.
func checkComposeGrace(t *testing.T, cf map[string]types.ServiceConfig) {
	t.Helper()
	for cmd, extra := range map[string]time.Duration{"worker": handBack, "gateway": 0} {
		s := cf[cmd]
		grace, err := time.ParseDuration(composeEnv(t, s)["CHATFLEET_SHUTDOWN_GRACE"])
		if err != nil {
			t.Errorf("%s: CHATFLEET_SHUTDOWN_GRACE: %v", s.Name, err)
		}
		if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) <= grace+extra {
			t.Errorf("%s: stop_grace_period %v, want more than %s + %s", s.Name, s.StopGracePeriod, grace, extra)
		}
	}
	w := cf["worker"]
	soft, err := parseGoBytes(composeEnv(t, w)["GOMEMLIMIT"])
	if err != nil || w.MemLimit == 0 || soft >= int64(w.MemLimit) {
		t.Errorf("%s: GOMEMLIMIT %d (%v) not below mem_limit %d", w.Name, soft, err, w.MemLimit)
	}
}

// checkComposeUpstream: by default the workers call the simulated model's
// service on the port it listens on.
func checkComposeUpstream(t *testing.T, p *types.Project, worker types.ServiceConfig) {
	t.Helper()
	base, err := url.Parse(composeEnv(t, worker)["CHATFLEET_LLM_BASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	model := service(t, p, base.Hostname())
	if model.Image != worker.Image || len(model.Command) != 1 || model.Command[0] != "simulate" {
		t.Errorf("the workers' upstream %s is not chatfleet simulate", base)
	}
	if listen := composeEnv(t, model)["CHATFLEET_DEV_MODEL_LISTEN"]; portOf(t, listen) != base.Port() || base.Path != "/v1" {
		t.Errorf("the workers call %s; the model listens on %s", base, listen)
	}
}

// checkComposeGateway: the API is published on the port the gateway
// listens on; its keys are the fleet's bucket, which operators add to
// while it runs (a file would need a restart per key).
func checkComposeGateway(t *testing.T, p *types.Project, gw types.ServiceConfig) {
	t.Helper()
	env := composeEnv(t, gw)
	port := portOf(t, env["CHATFLEET_GATEWAY_ADDR"])
	if !slices.ContainsFunc(gw.Ports, func(pc types.ServicePortConfig) bool { return fmt.Sprint(pc.Target) == port }) {
		t.Errorf("the gateway listens on %s; compose publishes %v", port, gw.Ports)
	}
	if keys := env["CHATFLEET_GATEWAY_KEYS"]; keys != "kv" {
		t.Errorf("CHATFLEET_GATEWAY_KEYS=%q, want kv: keys the operators add with chatfleet gateway key --kv", keys)
	}
	if !slices.Contains(slices.Collect(maps.Keys(gw.DependsOn)), "worker") {
		t.Error("the gateway does not start after the workers, which make its API keys bucket")
	}
}

// checkComposeImages: every image names a version, and NATS runs the
// version chatfleet is tested with.
func checkComposeImages(t *testing.T, p *types.Project) {
	t.Helper()
	for _, s := range p.Services {
		name, tag, ok := strings.Cut(s.Image, ":")
		if !ok || tag == "" || tag == "latest" {
			t.Errorf("%s: image %s is not pinned to a version", s.Name, s.Image)
		}
		if name == "nats" && tag != natsServerVersion(t) {
			t.Errorf("%s runs nats:%s; chatfleet's go.mod tests nats-server %s", s.Name, tag, natsServerVersion(t))
		}
	}
	for _, s := range p.Services {
		for _, pc := range s.Ports {
			if pc.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes %d on %q, not on loopback", s.Name, pc.Target, pc.HostIP)
			}
		}
	}
}

// checkComposeMounts: every file or directory compose binds exists.
func checkComposeMounts(t *testing.T, p *types.Project) {
	t.Helper()
	for _, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s mounts %s: %v", s.Name, v.Source, err)
			}
		}
	}
}

// mount returns the host path a service mounts at target (or at a
// directory above it) and the path below the mount.
func mount(t *testing.T, s types.ServiceConfig, target string) string {
	t.Helper()
	for _, v := range s.Volumes {
		if rel, err := filepath.Rel(v.Target, target); v.Type == types.VolumeTypeBind && err == nil && !strings.HasPrefix(rel, "..") {
			return filepath.Join(v.Source, rel)
		}
	}
	t.Fatalf("%s does not mount %s", s.Name, target)
	return ""
}

// hostPort splits host:port, failing t.
func hostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	return h, p
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// TestComposeRunsAFleet runs a worker and a gateway with the environments
// compose gives them, each logged in as its identity from chatfleet auth,
// on a 3-node cluster of compose's nats.conf with auth's configuration
// included; an operator adds an API key as compose's ops service would.
// It checks the endpoints Prometheus scrapes and the published API
// answer. (containers_test.go runs the same in containers when podman is
// installed.)
func TestComposeRunsAFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("runs chatfleet processes on a NATS cluster: skipped under -short")
	}
	p := loadCompose(t)
	cf := chatfleetServices(t, p)
	a := composeAuth(t, cf)
	metrics := probe{path: "/metrics", portVar: "CHATFLEET_HTTP_ADDR"}
	runFleet(t, fleetRun{
		natsConf:  filepath.Join(a.natsDir, "nats.conf"),
		worker:    deployed{env: a.env(t, cf["worker"]), probes: []probe{metrics}},
		gateway:   deployed{env: a.env(t, cf["gateway"]), probes: []probe{metrics, {portVar: "CHATFLEET_GATEWAY_ADDR"}}},
		operators: a.env(t, cf["status"]),
	})
}
