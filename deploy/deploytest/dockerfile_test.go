package deploytest

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// dockerfile is what the repository's Dockerfile builds and ships: its
// build stage's go build command, and its final stage.
type dockerfile struct {
	buildEnv  []string // NAME=value before "go build"
	buildArgs []string // go build's flags, "-o" and its value excluded
	pkg       string   // the package built
	final     []string // the final stage's instructions, FROM first
}

// readDockerfile reads the repository's Dockerfile.
func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	var d dockerfile
	var stages [][]string
	for _, line := range strings.Split(string(readRepoFile(t, "Dockerfile")), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			t.Fatalf("Dockerfile: %q before FROM", line)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], line)
		if cmd, ok := strings.CutPrefix(line, "RUN "); ok && strings.Contains(cmd, "go build") {
			d.parseBuild(t, cmd)
		}
	}
	if d.pkg == "" || len(stages) < 2 {
		t.Fatal("Dockerfile: want a build stage that runs go build and a final stage")
	}
	d.final = stages[len(stages)-1]
	return d
}

// parseBuild reads `NAME=value… go build FLAGS -o OUT PKG`.
func (d *dockerfile) parseBuild(t *testing.T, cmd string) {
	words := shellWords(cmd)
	for len(words) > 0 && strings.Contains(words[0], "=") {
		d.buildEnv, words = append(d.buildEnv, words[0]), words[1:]
	}
	if len(words) < 3 || words[0] != "go" || words[1] != "build" {
		t.Fatalf("Dockerfile: cannot read the build command %q", cmd)
	}
	args := words[2 : len(words)-1]
	if i := slices.Index(args, "-o"); i >= 0 && i+1 < len(args) {
		args = slices.Delete(slices.Clone(args), i, i+2)
	}
	d.buildArgs, d.pkg = args, words[len(words)-1]
}

// shellWords splits a command line at spaces outside double quotes and
// drops the quotes, enough for a Dockerfile's RUN line.
func shellWords(s string) []string {
	var words []string
	var word strings.Builder
	quoted, inWord := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case r == ' ' && !quoted:
			if inWord {
				words, inWord = append(words, word.String()), false
				word.Reset()
			}
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, word.String())
	}
	return words
}

// goBuild is the Dockerfile's build command for pkg (its own, or another
// binary built the same way) writing out, run in the main module.
func (d dockerfile) goBuild(out, pkg string) *exec.Cmd {
	args := append([]string{"build"}, d.buildArgs...)
	cmd := exec.Command("go", append(args, "-o", out, pkg)...)
	cmd.Dir = repoPath()
	cmd.Env = append(cmd.Environ(), d.buildEnv...)
	return cmd
}

// scratchVariant is the Dockerfile's final stage built on scratch from a
// binary beside it: what podman can build with no registry to pull from.
func (d dockerfile) scratchVariant(t *testing.T) string {
	t.Helper()
	var out []string
	for _, line := range d.final {
		switch {
		case strings.HasPrefix(line, "FROM "):
			line = "FROM scratch"
		case strings.HasPrefix(line, "COPY --from="):
			f := strings.Fields(line)
			if len(f) != 4 {
				t.Fatalf("Dockerfile: cannot read %q", line)
			}
			line = "COPY " + f[2][strings.LastIndex(f[2], "/")+1:] + " " + f[3]
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n") + "\n"
}

// TestDockerfile: the image builds chatfleet statically, runs it as a
// non-root user, and exposes the port of its health and metrics.
func TestDockerfile(t *testing.T) {
	d := readDockerfile(t)
	if !slices.Contains(d.buildEnv, "CGO_ENABLED=0") || d.pkg != "./cmd/chatfleet" {
		t.Errorf("Dockerfile builds %s with %v; want a static build (CGO_ENABLED=0) of ./cmd/chatfleet", d.pkg, d.buildEnv)
	}
	final := strings.Join(d.final, "\n")
	httpPort := portOf(t, variableDefaults(t)["CHATFLEET_HTTP_ADDR"])
	for _, want := range []string{`ENTRYPOINT ["/chatfleet"]`, "EXPOSE " + httpPort, "USER 65532:65532"} {
		if !strings.Contains(final, want) {
			t.Errorf("the Dockerfile's final stage lacks %s:\n%s", want, final)
		}
	}
	variant := d.scratchVariant(t)
	if !strings.HasPrefix(variant, "FROM scratch\nCOPY chatfleet /chatfleet\n") {
		t.Errorf("the scratch variant does not copy the binary first:\n%s", variant)
	}
}
