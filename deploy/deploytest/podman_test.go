package deploytest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// podman runs containers the way ../shared/CONTAINERS.md found works on
// these machines: runc (crun fails here), cgroupfs, no default ulimits,
// host networking on loopback. Names carry a random suffix so parallel
// runs never meet.
type podman struct {
	t      *testing.T
	conf   string // CONTAINERS_CONF
	suffix string
}

// newPodman skips t when podman is not installed.
func newPodman(t *testing.T) *podman {
	t.Helper()
	if _, err := exec.LookPath("podman"); err != nil {
		t.Skip("podman is not installed (apt-get install podman runc): the containers are not run")
	}
	conf := filepath.Join(t.TempDir(), "containers.conf")
	if err := os.WriteFile(conf, []byte("[containers]\ndefault_ulimits = []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return &podman{t: t, conf: conf, suffix: hex.EncodeToString(b)}
}

// command is a podman command line.
func (p *podman) command(args ...string) *exec.Cmd {
	cmd := exec.Command("podman", append([]string{"--runtime", "runc", "--cgroup-manager", "cgroupfs"}, args...)...)
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+p.conf)
	return cmd
}

// output runs podman and returns its standard output, failing t with its
// error output.
func (p *podman) output(args ...string) string {
	p.t.Helper()
	cmd := p.command(args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		p.t.Fatalf("podman %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// build builds an image named name from containerfile with the files in
// context beside it, and removes it at the test's end.
func (p *podman) build(name, containerfile string, context ...string) string {
	p.t.Helper()
	dir := p.t.TempDir()
	for _, f := range context {
		b, err := os.ReadFile(f)
		if err != nil {
			p.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o755); err != nil {
			p.t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "Containerfile"), []byte(containerfile), 0o644); err != nil {
		p.t.Fatal(err)
	}
	tag := "localhost/" + name + ":" + p.suffix
	p.output("build", "--quiet", "--tag", tag, "--file", filepath.Join(dir, "Containerfile"), dir)
	p.t.Cleanup(func() { _ = p.command("rmi", "--force", tag).Run() })
	return tag
}

// container is one a test started; it is stopped and removed at the
// test's end.
type container struct {
	p    *podman
	name string
}

// start runs image detached on the host's network, its root file system
// read-only, with env and volumes
// ("host:container[:ro]"); args follow the image.
func (p *podman) start(name, image string, env map[string]string, volumes []string, args ...string) *container {
	p.t.Helper()
	c := &container{p: p, name: name + "-" + p.suffix}
	// Read-only, as the chart runs chatfleet (readOnlyRootFilesystem):
	// volumes stay writable.
	run := []string{"run", "--detach", "--name", c.name, "--network", "host", "--read-only"}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		run = append(run, "--env", k+"="+env[k])
	}
	for _, v := range volumes {
		run = append(run, "--volume", v)
	}
	p.output(append(append(run, image), args...)...)
	p.t.Cleanup(func() {
		_ = p.command("stop", "--time", "60", c.name).Run()
		if p.t.Failed() {
			logs, _ := p.command("logs", c.name).CombinedOutput()
			p.t.Logf("%s's output:\n%s", name, logs)
		}
		_ = p.command("rm", "--force", c.name).Run()
	})
	return c
}

// waitFor polls check until it succeeds, failing t when the container
// stops first.
func (c *container) waitFor(what string, check func() error) {
	c.p.t.Helper()
	poll(c.p.t, c.name, what, check, func() error {
		if running := strings.TrimSpace(c.p.output("inspect", "--format", "{{.State.Running}}", c.name)); running != "true" {
			return errors.New("stopped")
		}
		return nil
	})
}
