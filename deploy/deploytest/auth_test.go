package deploytest

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/chatfleet/chatfleet/internal/config"
	"github.com/chatfleet/chatfleet/internal/natsserver"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/subjects"
)

// The identities `chatfleet auth` makes for a fleet's own processes, by
// the base name of their settings files.
const (
	workersIdentity   = "workers"
	gatewayIdentity   = "gateway"
	operatorsIdentity = "operators"
)

// fleetAuth is what `chatfleet auth` wrote for a deployment, as an
// operator runs it before installing: the servers' configuration and each
// identity's settings file.
type fleetAuth struct {
	conf    string // the nats-server configuration (auth.conf)
	secrets string // the directory of the settings files
}

// generateAuth runs `chatfleet auth` for prefix, with no tenants, writing
// the configuration to conf and the settings to a temporary directory.
func generateAuth(t *testing.T, prefix, conf string) fleetAuth {
	t.Helper()
	a := fleetAuth{conf: conf, secrets: filepath.Join(t.TempDir(), "secrets")}
	cmd := exec.Command(chatfleetBinary(t), "auth", "--secrets", a.secrets, "--out", conf)
	cmd.Env = []string{"CHATFLEET_PREFIX=" + prefix}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chatfleet auth: %v\n%s", err, out)
	}
	return a
}

// settings are identity's variables as compose's env_file and kubectl
// create secret --from-env-file read its settings file.
func (a fleetAuth) settings(t *testing.T, identity string) map[string]string {
	t.Helper()
	vars, err := config.ReadSettings(filepath.Join(a.secrets, identity+".env"))
	if err != nil || vars["CHATFLEET_NATS_USER"] == "" || vars["CHATFLEET_NATS_PASSWORD"] == "" {
		// The names only: the values are secrets.
		t.Fatalf("chatfleet auth wrote no user and password for %s (%v): %v", identity, err, slices.Sorted(maps.Keys(vars)))
	}
	return vars
}

// checkAuthConf parses a nats.conf that includes (or is) chatfleet auth's
// configuration with nats-server's parser and checks it holds the fleet
// account with the users of the workers, the gateways and the operators.
func checkAuthConf(t *testing.T, where, conf, prefix string) *server.Options {
	t.Helper()
	o, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	fleet := fleetAccount(t, prefix)
	users := map[string]string{}
	for _, u := range o.Users {
		users[u.Username] = u.Account.Name
	}
	for _, id := range []string{workersIdentity, gatewayIdentity, operatorsIdentity} {
		if user := prefix + "-" + id; users[user] != fleet {
			t.Errorf("%s: user %s is in account %q, want %s (users: %v)", where, user, users[user], fleet, users)
		}
	}
	return o
}

// fleetAccount is the account chatfleet auth puts the fleet's streams
// in, named after the jobs stream: CHAT_FLEET for CHAT_JOBS.
func fleetAccount(t *testing.T, prefix string) string {
	t.Helper()
	n, err := subjects.New(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(n.JobsStream(), "_JOBS") + "_FLEET"
}

// runConfigCluster runs a 3-node JetStream cluster of servers started from
// conf (chatfleet auth's configuration, or a nats.conf including it), each
// on free loopback ports with its own store, and returns the client URLs.
func runConfigCluster(t *testing.T, conf string) string {
	t.Helper()
	return natstest.RunClusterWith(t, 3, func(cfg *natsserver.Config) {
		cfg.ConfigFile, cfg.Listen = conf, "127.0.0.1:-1"
		cfg.Tune = func(o *server.Options) { o.HTTPPort = 0 } // three in one process: no monitoring port
	}).URLs()
}

// run runs a one-shot chatfleet command with exactly env and returns its
// standard output, failing t with its error output.
func run(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	cmd := exec.Command(chatfleetBinary(t), args...)
	cmd.Env = []string{}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chatfleet %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// copyDir copies the regular files of dir into a new temporary directory.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	out := t.TempDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b := mustRead(t, filepath.Join(dir, e.Name()))
		if err := os.WriteFile(filepath.Join(out, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return out
}
