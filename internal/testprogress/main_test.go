package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// run starts a goroutine and a process; both must be gone when it returns.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestPrinter: a package's line when it finishes, a slow test named, the
// whole output of a failed test (subtests included) and of a package that
// failed outside its tests; nothing of a passing test's output.
func TestPrinter(t *testing.T) {
	t.Parallel()
	const m = "github.com/chatfleet/chatfleet/"
	lines := []string{
		`{"Action":"start","Package":"` + m + `a"}`,
		`{"Action":"run","Package":"` + m + `a","Test":"TestQuiet"}`,
		`{"Action":"output","Package":"` + m + `a","Test":"TestQuiet","Output":"quiet log line\n"}`,
		`{"Action":"pass","Package":"` + m + `a","Test":"TestQuiet","Elapsed":0.1}`,
		`{"Action":"run","Package":"` + m + `a","Test":"TestSlow"}`,
		`{"Action":"pass","Package":"` + m + `a","Test":"TestSlow","Elapsed":95.5}`,
		`{"Action":"run","Package":"` + m + `a","Test":"TestBroken"}`,
		`{"Action":"run","Package":"` + m + `a","Test":"TestBroken/case"}`,
		`{"Action":"output","Package":"` + m + `a","Test":"TestBroken/case","Output":"    x_test.go:9: got 1, want 2\n"}`,
		`{"Action":"fail","Package":"` + m + `a","Test":"TestBroken/case","Elapsed":0}`,
		`{"Action":"output","Package":"` + m + `a","Test":"TestBroken","Output":"--- FAIL: TestBroken (0.00s)\n"}`,
		`{"Action":"fail","Package":"` + m + `a","Test":"TestBroken","Elapsed":0}`,
		`{"Action":"fail","Package":"` + m + `a","Elapsed":96.1}`,
		`{"Action":"output","Package":"` + m + `b","Output":"panic: boom\n"}`,
		`{"Action":"fail","Package":"` + m + `b","Elapsed":0.2}`,
		`{"Action":"pass","Package":"` + m + `c","Elapsed":1.25}`,
		`{"Action":"skip","Package":"` + m + `d","Elapsed":0}`,
		`not json: passed on`,
		`{"ImportPath":"` + m + `e [` + m + `e.test]","Action":"build-output","Output":"e/x.go:1:1: syntax error\n"}`,
		`{"ImportPath":"` + m + `e [` + m + `e.test]","Action":"build-fail"}`,
	}
	var out strings.Builder
	p := newPrinter(&out)
	p.read(strings.NewReader(strings.Join(lines, "\n") + "\n"))
	got := out.String()
	for _, want := range []string{
		"a TestSlow took 95.500s",
		"    x_test.go:9: got 1, want 2\n--- FAIL: TestBroken",
		"panic: boom",
		"ok   " + m + "c 1.250s",
		"?    " + m + "d [no test files]",
		"not json: passed on",
		"e/x.go:1:1: syntax error\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "quiet log line") || strings.Contains(got, "TestQuiet") {
		t.Errorf("a passing test's output was printed:\n%s", got)
	}
	if p.packages != 4 {
		t.Errorf("%d packages finished, want 4", p.packages)
	}
}

// TestRunUsesGivenGo: run tests with the go command it is given, not the
// one on PATH, and puts that Go's bin directory first on the tests' PATH.
func TestRunUsesGivenGo(t *testing.T) {
	t.Parallel()
	fake := filepath.Join(t.TempDir(), "fakego")
	script := `#!/bin/sh
case "$1" in
env) echo /fake/goroot ;;
test) echo '{"Action":"pass","Package":"fake/pkg","Elapsed":1.5}'; echo "args: $*" >&2; echo "PATH=$PATH" >&2 ;;
esac
`
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	var out, errb strings.Builder
	code := run(fake, []string{"-race", "./..."}, &out, &errb)
	if code != 0 || !strings.Contains(out.String(), "ok   fake/pkg 1.500s") || !strings.Contains(out.String(), "PASS (1 packages") {
		t.Errorf("exit %d, stdout:\n%s", code, out.String())
	}
	for _, want := range []string{"args: test -json -race ./...", "PATH=/fake/goroot/bin" + string(os.PathListSeparator)} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("the fake go did not see %q:\n%s", want, errb.String())
		}
	}
	if code := run(filepath.Join(t.TempDir(), "no-such-go"), nil, &out, &errb); code != 2 {
		t.Errorf("a go that does not exist: exit %d, want 2", code)
	}
}
