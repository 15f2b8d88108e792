package main

import (
	"strings"
	"testing"
)

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
