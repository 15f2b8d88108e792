package deploytest

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

// natsImage mirrors the official nats image: the server alone, as its
// entrypoint, so compose's command runs on it unchanged.
const natsImage = "FROM scratch\nCOPY nats-server /nats-server\nENTRYPOINT [\"/nats-server\"]\n"

// TestContainers builds the Dockerfile's final stage on scratch and a
// scratch nats-server image, then runs the compose file's services in
// them — the 3-node NATS cluster with its configuration and chatfleet
// auth's, the simulated model, two workers and the gateway, each with
// compose's command, environment and identity — on the host's network,
// with every address moved to a free loopback port. The operators add an
// API key (compose's ops service); a question asked with `chatfleet ask`
// as the operators and one through the gateway are answered. Skipped
// without podman.
func TestContainers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds images and runs containers: skipped under -short")
	}
	pm := newPodman(t)
	p := loadCompose(t)
	cf := chatfleetServices(t, p)
	a := composeAuth(t, cf)
	chatfleetImage := pm.build("chatfleet-deploytest", readDockerfile(t).scratchVariant(t), chatfleetBinary(t))
	natsURL := runNATSCluster(t, pm, p, pm.build("nats-deploytest", natsImage, natsServerBinary(t)), a.natsDir)

	// local moves a service's environment, its identity's settings
	// included, onto loopback and the cluster.
	local := func(s types.ServiceConfig) map[string]string {
		env := composeEnv(t, s)
		if _, ok := composeIdentity[s.Command[0]]; ok {
			env = a.env(t, s)
		}
		maps.DeleteFunc(env, func(k, _ string) bool { return strings.HasPrefix(k, "OTEL_") }) // no collector runs here
		for _, k := range []string{"CHATFLEET_HTTP_ADDR", "CHATFLEET_GATEWAY_ADDR", "CHATFLEET_DEV_MODEL_LISTEN"} {
			if _, ok := env[k]; ok {
				env[k] = freeAddr(t)
			}
		}
		if _, ok := env["CHATFLEET_NATS_URL"]; ok {
			env["CHATFLEET_NATS_URL"] = natsURL
		}
		return env
	}

	modelEnv := local(cf["simulate"])
	model := pm.start(cf["simulate"].Name, chatfleetImage, modelEnv, nil, cf["simulate"].Command...)
	modelURL := "http://" + modelEnv["CHATFLEET_DEV_MODEL_LISTEN"] + "/v1"
	model.waitFor("the simulated model", func() error { return httpOK(modelURL + "/models") })

	for i := range 2 {
		env := local(cf["worker"])
		env["CHATFLEET_LLM_BASE_URL"] = modelURL
		w := pm.start(fmt.Sprintf("worker-%d", i+1), chatfleetImage, env, nil, cf["worker"].Command...)
		w.waitFor("/readyz", func() error { return httpOK("http://" + env["CHATFLEET_HTTP_ADDR"] + "/readyz") })
	}

	// docker compose run --rm ops …: the operators' commands.
	ops := func(args ...string) string {
		run := []string{"run", "--rm", "--network", "host", "--read-only"}
		for k, v := range local(cf["status"]) {
			run = append(run, "--env", k+"="+v)
		}
		return pm.output(append(append(run, chatfleetImage), args...)...)
	}
	key, _ := parseGatewayKey(t, ops("gateway", "key", "--kv", "default"))
	genv := local(cf["gateway"])
	gw := pm.start(cf["gateway"].Name, chatfleetImage, genv, nil, cf["gateway"].Command...)
	gw.waitFor("the API", func() error { return tcpOpen(genv["CHATFLEET_GATEWAY_ADDR"]) })

	answer := ops("ask", "hello from a container")
	if strings.TrimSpace(answer) == "" {
		t.Error("chatfleet ask printed no answer")
	}
	if complete(t, "http://"+genv["CHATFLEET_GATEWAY_ADDR"], key, genv["CHATFLEET_MODEL"]) == "" {
		t.Error("the gateway's answer is empty")
	}
}

// runNATSCluster runs compose's NATS services in image, each with its
// command and configuration (their directory replaced by natsDir, where
// chatfleet auth wrote auth.conf), moved onto free loopback ports, and
// waits until JetStream is healthy on all three. It returns the client
// URLs.
func runNATSCluster(t *testing.T, pm *podman, p *types.Project, image, natsDir string) string {
	t.Helper()
	type node struct{ client, monitor, cluster string }
	nodes := make([]node, len(natsServiceNames))
	var routes, urls []string
	for i := range nodes {
		nodes[i] = node{freeAddr(t), freeAddr(t), freeAddr(t)}
		routes = append(routes, "nats://"+nodes[i].cluster)
		urls = append(urls, "nats://"+nodes[i].client)
	}
	var started []*container
	for i, name := range natsServiceNames {
		s := service(t, p, name)
		var volumes []string
		for _, v := range s.Volumes {
			source := v.Source
			switch {
			case v.Type == types.VolumeTypeVolume:
				source = t.TempDir()
			case source == mustAbs(t, repoPath("deploy", "compose", "nats")):
				source = natsDir
			}
			volumes = append(volumes, source+":"+v.Target+map[bool]string{true: ":ro"}[v.ReadOnly])
		}
		n := nodes[i]
		args := slices.Concat(s.Command, []string{"--addr", "127.0.0.1", "--port", portOf(t, n.client),
			"--http_port", portOf(t, n.monitor), "--cluster", "nats://" + n.cluster, "--routes", strings.Join(routes, ",")})
		started = append(started, pm.start(name, image, nil, volumes, args...))
	}
	for i, c := range started {
		host, port, _ := net.SplitHostPort(nodes[i].monitor)
		c.waitFor("a healthy JetStream", func() error { return httpOK("http://" + net.JoinHostPort(host, port) + "/healthz") })
	}
	return strings.Join(urls, ",")
}
