package deploytest

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var (
	guideRow  = regexp.MustCompile("(?m)^\\| `([^`]+)` \\|[^|]+\\|([^|\\n]*)\\|$")
	testName  = regexp.MustCompile(`Test[A-Za-z]+`)
	authLine  = regexp.MustCompile(`(?m)chatfleet auth (.*)$`)
	composeRe = regexp.MustCompile(`--secrets secrets --out nats/auth\.conf\b`)
)

// TestOperatorGuide: deploy/README.md's table names every part of deploy/
// and only paths that exist, and each test it says checks a part exists;
// its compose quickstart runs chatfleet auth with the paths compose.yaml
// reads (secrets/*.env, nats/auth.conf), as compose.yaml's header does.
func TestOperatorGuide(t *testing.T) {
	guide := string(readRepoFile(t, "deploy", "README.md"))
	rows := guideRow.FindAllStringSubmatch(guide, -1)
	if len(rows) == 0 {
		t.Fatal("deploy/README.md has no table of deploy/")
	}
	tests := definedTests(t)
	var paths []string
	for _, r := range rows {
		path := strings.TrimSuffix(r[1], "/")
		paths = append(paths, path)
		if _, err := os.Stat(repoPath("deploy", path)); err != nil {
			t.Errorf("the guide's table names %s: %v", r[1], err)
		}
		for _, name := range testName.FindAllString(r[2], -1) {
			if !tests[name] {
				t.Errorf("the guide says %s checks %s; no such test", name, r[1])
			}
		}
	}
	entries, err := os.ReadDir(repoPath("deploy"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "README.md" {
			continue
		}
		if !slices.ContainsFunc(paths, func(p string) bool { return p == e.Name() || strings.HasPrefix(p, e.Name()+"/") }) {
			t.Errorf("the guide's table does not say what deploy/%s is", e.Name())
		}
	}

	compose := string(readRepoFile(t, "deploy", "compose", "compose.yaml"))
	for where, text := range map[string]string{"deploy/README.md": guide, "compose.yaml": compose} {
		if !slices.ContainsFunc(authLine.FindAllStringSubmatch(text, -1), func(m []string) bool { return composeRe.MatchString(m[1]) }) {
			t.Errorf("%s does not run chatfleet auth --secrets secrets --out nats/auth.conf, the paths compose reads", where)
		}
	}
}

// definedTests are the test functions of deploytest and of the main
// module's packages the guide names (worker).
func definedTests(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, pattern := range []string{"deploy/deploytest/*_test.go", "worker/*_test.go"} {
		files, err := filepath.Glob(repoPath(pattern))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			for _, m := range regexp.MustCompile(`(?m)^func (Test[A-Za-z]+)\(`).FindAllStringSubmatch(string(mustRead(t, f)), -1) {
				out[m[1]] = true
			}
		}
	}
	return out
}
