package deploytest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// binDir holds the binaries the tests build, for the whole run.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "chatfleet-deploytest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// built is a binary built once per run.
type built struct {
	once sync.Once
	path string
	err  error
}

var chatfleetBuild, natsServerBuild built

// binary builds pkg with the Dockerfile's build command into binDir/name,
// once: the binary the image would hold.
func (b *built) binary(t *testing.T, name, pkg string) string {
	t.Helper()
	d := readDockerfile(t)
	b.once.Do(func() {
		b.path = filepath.Join(binDir, name)
		if out, err := d.goBuild(b.path, pkg).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// chatfleetBinary is chatfleet built as the Dockerfile builds it.
func chatfleetBinary(t *testing.T) string {
	return chatfleetBuild.binary(t, "chatfleet", readDockerfile(t).pkg)
}

// natsServerBinary is the nats-server chatfleet's module requires, built
// the same way.
func natsServerBinary(t *testing.T) string {
	return natsServerBuild.binary(t, "nats-server", "github.com/nats-io/nats-server/v2")
}

var variables struct {
	once     sync.Once
	defaults map[string]string
	err      error
}

// variableDefaults is every variable `chatfleet env` lists, with its
// default: the configuration the binary knows.
func variableDefaults(t *testing.T) map[string]string {
	t.Helper()
	bin := chatfleetBinary(t)
	variables.once.Do(func() {
		out, err := exec.Command(bin, "env").Output()
		if err != nil {
			variables.err = fmt.Errorf("chatfleet env: %w", err)
			return
		}
		variables.defaults = parseEnvTable(out)
	})
	if variables.err != nil {
		t.Fatal(variables.err)
	}
	return variables.defaults
}

// parseEnvTable reads `chatfleet env`'s table, whose columns (VARIABLE,
// DEFAULT, MEANING) line up under its header.
func parseEnvTable(out []byte) map[string]string {
	defaults := map[string]string{}
	var from, to int // the DEFAULT column
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "VARIABLE") {
			from, to = strings.Index(line, "DEFAULT"), strings.Index(line, "MEANING")
			continue
		}
		name, _, _ := strings.Cut(line, " ")
		if !strings.HasPrefix(name, "CHATFLEET_") || to == 0 || len(line) < to {
			continue
		}
		defaults[name] = strings.TrimSpace(line[from:to])
	}
	return defaults
}

// portOf returns the port of a host:port address.
func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	return port
}
