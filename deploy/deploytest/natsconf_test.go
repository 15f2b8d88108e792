package deploytest

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/nats-io/nats-server/v2/server"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// natsServiceNames are the compose file's NATS cluster.
var natsServiceNames = []string{"nats-1", "nats-2", "nats-3"}

// defaultSyncInterval is how often JetStream fsyncs unless told: the
// window a node's OS crash can lose (README: Durability).
const defaultSyncInterval = 2 * time.Minute

// composeNATSConfig parses the configuration each compose NATS service
// runs — nats.conf from natsDir, a copy of the directory they mount with
// chatfleet auth's auth.conf beside it — with nats-server's own parser and
// checks it makes one JetStream cluster of all three, on a volume,
// fsyncing more often than the default, with the fleet's accounts. It
// returns the (shared) configuration.
func composeNATSConfig(t *testing.T, p *types.Project, natsDir string) *server.Options {
	t.Helper()
	var opts *server.Options
	for _, name := range natsServiceNames {
		s := service(t, p, name)
		cmd := s.Command
		i, j := slices.Index(cmd, "--config"), slices.Index(cmd, "--name")
		if i < 0 || j < 0 || i+1 >= len(cmd) || j+1 >= len(cmd) || cmd[j+1] != name {
			t.Fatalf("%s runs %v, want --config FILE --name %s", name, cmd, name)
		}
		mounted := mount(t, s, cmd[i+1])
		if filepath.Dir(mounted) != mustAbs(t, repoPath("deploy", "compose", "nats")) {
			t.Fatalf("%s runs %s, not a file of deploy/compose/nats", name, mounted)
		}
		file := filepath.Join(natsDir, filepath.Base(mounted))
		o := checkAuthConf(t, name, file, composeEnv(t, service(t, p, "worker"))["CHATFLEET_PREFIX"])
		checkJetStream(t, name, o)
		if !slices.ContainsFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool {
			return v.Type == types.VolumeTypeVolume && v.Target == o.StoreDir
		}) {
			t.Errorf("%s keeps JetStream in %s, which is not a volume", name, o.StoreDir)
		}
		var routes []string
		for _, r := range o.Routes {
			if r.Port() != itoa(o.Cluster.Port) {
				t.Errorf("%s: route %s is not on the cluster port %d", name, r, o.Cluster.Port)
			}
			routes = append(routes, r.Hostname())
		}
		if !slices.Equal(routes, natsServiceNames) || o.Cluster.Name == "" {
			t.Errorf("%s: cluster %q routes to %v, want %v", name, o.Cluster.Name, routes, natsServiceNames)
		}
		if !strings.Contains(string(mustRead(t, file)), "\ninclude auth.conf") {
			t.Errorf("%s: nats.conf does not include auth.conf, where the fleet's authorization goes", name)
		}
		if o.StoreDir != "/data" || o.Port != 4222 {
			t.Errorf("%s: auth.conf's listen or store_dir won over nats.conf's: port %d, store %s", name, o.Port, o.StoreDir)
		}
		opts = o
	}
	return opts
}

// checkJetStream: JetStream on file storage, fsyncing more often than by
// default.
func checkJetStream(t *testing.T, where string, o *server.Options) {
	t.Helper()
	if !o.JetStream || o.StoreDir == "" {
		t.Errorf("%s: JetStream %v, store %q: want JetStream on file storage", where, o.JetStream, o.StoreDir)
	}
	if !o.SyncAlways && (o.SyncInterval <= 0 || o.SyncInterval >= defaultSyncInterval) {
		t.Errorf("%s: sync_interval %s: set it below the default %s (README: Durability)", where, o.SyncInterval, defaultSyncInterval)
	}
}

// natsChartValues are the fields of the official NATS chart's values
// (nats-io/k8s, chart nats 2.x) that deploy/helm/nats-values.yaml sets;
// decoding strictly catches a misspelt or misplaced key, which the chart
// would ignore without a word. The names were read off the chart's
// values.yaml; the chart itself cannot be downloaded here.
type natsChartValues struct {
	Config struct {
		Cluster struct {
			Enabled  bool `json:"enabled"`
			Replicas int  `json:"replicas"`
		} `json:"cluster"`
		JetStream struct {
			Enabled   bool `json:"enabled"`
			FileStore struct {
				Enabled bool   `json:"enabled"`
				Dir     string `json:"dir"`
				PVC     struct {
					Enabled bool   `json:"enabled"`
					Size    string `json:"size"`
				} `json:"pvc"`
			} `json:"fileStore"`
			MemoryStore struct {
				Enabled bool `json:"enabled"`
			} `json:"memoryStore"`
			Merge map[string]string `json:"merge"`
		} `json:"jetstream"`
		Monitor struct {
			Enabled bool `json:"enabled"`
		} `json:"monitor"`
		Merge map[string]string `json:"merge"`
	} `json:"config"`
	ConfigMap struct {
		Merge struct {
			Data map[string]string `json:"data"`
		} `json:"merge"`
	} `json:"configMap"`
	Container struct {
		Image struct {
			Tag string `json:"tag"`
		} `json:"image"`
		Env       map[string]string           `json:"env"`
		Resources corev1.ResourceRequirements `json:"resources"`
	} `json:"container"`
	PodTemplate struct {
		TopologySpreadConstraints map[string]struct {
			MaxSkew           int    `json:"maxSkew"`
			WhenUnsatisfiable string `json:"whenUnsatisfiable"`
		} `json:"topologySpreadConstraints"`
	} `json:"podTemplate"`
	PodDisruptionBudget struct {
		Enabled bool `json:"enabled"`
	} `json:"podDisruptionBudget"`
	PromExporter struct {
		Enabled    bool `json:"enabled"`
		PodMonitor struct {
			Enabled bool `json:"enabled"`
		} `json:"podMonitor"`
	} `json:"promExporter"`
}

// TestNATSChartValues: the values file makes a 3-node JetStream cluster on
// file storage with chatfleet's nats-server version and sync_interval,
// and includes an auth.conf from the ConfigMap, where the install puts
// chatfleet auth's configuration: nats-server parses the result, with the
// fleet's accounts, and the chart's settings win over auth's.
func TestNATSChartValues(t *testing.T) {
	var v natsChartValues
	if err := yaml.UnmarshalStrict(readRepoFile(t, "deploy", "helm", "nats-values.yaml"), &v); err != nil {
		t.Fatal(err)
	}
	c := v.Config
	if !c.Cluster.Enabled || c.Cluster.Replicas != 3 || !c.JetStream.Enabled || !c.JetStream.FileStore.Enabled ||
		!c.JetStream.FileStore.PVC.Enabled || c.JetStream.MemoryStore.Enabled {
		t.Errorf("want a 3-node cluster with JetStream on persistent file storage only: %+v", c)
	}
	if !strings.HasPrefix(v.Container.Image.Tag, natsServerVersion(t)) {
		t.Errorf("NATS image %s; chatfleet is tested with nats-server %s", v.Container.Image.Tag, natsServerVersion(t))
	}
	limit := v.Container.Resources.Limits[corev1.ResourceMemory]
	if soft, err := parseGoBytes(v.Container.Env["GOMEMLIMIT"]); err != nil || soft >= limit.Value() {
		t.Errorf("GOMEMLIMIT %q (%v) not below the memory limit %s", v.Container.Env["GOMEMLIMIT"], err, limit.String())
	}
	if !v.PodDisruptionBudget.Enabled || len(v.PodTemplate.TopologySpreadConstraints) == 0 {
		t.Error("want a PodDisruptionBudget and the servers spread over nodes")
	}

	// The nats.conf the chart would write, reduced to what these values
	// put in it, parsed by nats-server.
	dir := t.TempDir()
	var includes []string
	for k, file := range c.Merge {
		if strings.HasSuffix(k, "$include") {
			includes = append(includes, "include "+file)
		}
	}
	if len(includes) != 1 || v.ConfigMap.Merge.Data["auth.conf"] == "" {
		t.Fatalf("want one include, of auth.conf from the ConfigMap: %v", includes)
	}
	// helm install … --set-file 'configMap.merge.data.auth\.conf=auth.conf'
	generateAuth(t, "chat", filepath.Join(dir, "auth.conf"))
	sync := strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(c.JetStream.Merge["sync_interval"], "<<"), ">>"))
	conf := strings.Join(includes, "\n") + "\njetstream {\n  store_dir: " + quote(filepath.Join(dir, "js")) +
		"\n  sync_interval: " + sync + "\n}\n"
	file := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	o := checkAuthConf(t, "nats-values.yaml", file, "chat")
	checkJetStream(t, "nats-values.yaml", o)
	if o.StoreDir != filepath.Join(dir, "js") {
		t.Errorf("auth.conf's store_dir won over the chart's: %s", o.StoreDir)
	}
}

func mustRead(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func itoa(n int) string { return strconv.Itoa(n) }
