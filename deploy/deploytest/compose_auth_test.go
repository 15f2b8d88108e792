package deploytest

import (
	"maps"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

// composeIdentity is the NATS identity each chatfleet command of the
// compose file logs in as; the simulated model does not use NATS.
var composeIdentity = map[string]string{"worker": workersIdentity, "gateway": gatewayIdentity, "status": operatorsIdentity}

// composeFleetAuth is chatfleet auth run as compose.yaml's header says:
// the configuration beside a copy of nats.conf, the settings files.
type composeFleetAuth struct {
	fleetAuth
	natsDir string // nats.conf and auth.conf, what the NATS services mount
}

func composeAuth(t *testing.T, cf map[string]types.ServiceConfig) composeFleetAuth {
	t.Helper()
	dir := copyDir(t, repoPath("deploy", "compose", "nats"))
	prefix := composeEnv(t, cf["worker"])["CHATFLEET_PREFIX"]
	return composeFleetAuth{fleetAuth: generateAuth(t, prefix, filepath.Join(dir, "auth.conf")), natsDir: dir}
}

// env is the environment compose gives s: its env_file, the settings of
// its identity, overridden by its environment.
func (a composeFleetAuth) env(t *testing.T, s types.ServiceConfig) map[string]string {
	t.Helper()
	env := a.settings(t, composeIdentity[s.Command[0]])
	maps.Copy(env, composeEnv(t, s))
	return env
}

// checkComposeIdentities: every chatfleet process that reaches NATS logs
// in as its own identity, from the settings file chatfleet auth writes for
// it; no credential is in compose.yaml, and neither the settings nor the
// generated configuration can be committed.
func checkComposeIdentities(t *testing.T, cf map[string]types.ServiceConfig) {
	t.Helper()
	dir := mustAbs(t, repoPath("deploy", "compose"))
	for cmd, s := range cf {
		var files []string
		for _, f := range s.EnvFiles {
			files = append(files, f.Path)
		}
		want, connects := composeIdentity[cmd]
		switch {
		case !connects && len(files) > 0:
			t.Errorf("%s reads %v but does not use NATS", s.Name, files)
		case connects && (len(files) != 1 || filepath.Clean(files[0]) != filepath.Join(dir, "secrets", want+".env")):
			t.Errorf("%s reads %v, want the %s identity's settings, secrets/%s.env", s.Name, files, want, want)
		}
		for k := range composeEnv(t, s) {
			if strings.HasPrefix(k, "CHATFLEET_NATS_") && k != "CHATFLEET_NATS_URL" {
				t.Errorf("%s: %s in compose.yaml; credentials come from chatfleet auth's settings", s.Name, k)
			}
		}
	}
	for _, f := range []string{"deploy/compose/secrets/workers.env", "deploy/compose/nats/auth.conf"} {
		err := exec.Command("git", "-C", repoPath(), "check-ignore", "-q", f).Run()
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
			t.Errorf("git would commit %s, which chatfleet auth writes for the compose fleet", f)
		} else if err != nil {
			t.Logf("git check-ignore %s: %v (not a git checkout?)", f, err)
		}
	}
}
