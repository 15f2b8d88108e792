package deploytest

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// repoPath names a file of the repository, from this package's directory.
func repoPath(parts ...string) string {
	return filepath.Join(append([]string{"..", ".."}, parts...)...)
}

// readRepoFile reads a file of the repository.
func readRepoFile(t *testing.T, parts ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(repoPath(parts...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var natsServerRequirement = regexp.MustCompile(`(?m)^\s*github\.com/nats-io/nats-server/v2 (v\S+)`)

// natsServerVersion is the nats-server version chatfleet's module (and so
// every test and dev mode) runs, without the "v".
func natsServerVersion(t *testing.T) string {
	t.Helper()
	m := natsServerRequirement.FindSubmatch(readRepoFile(t, "go.mod"))
	if m == nil {
		t.Fatal("go.mod does not require github.com/nats-io/nats-server/v2")
	}
	return string(m[1][1:])
}
