// Command testprogress runs `go test -json` with the arguments it is given
// and prints progress as packages finish, in the order they finish: one
// line per package (as go test prints it), the tests that took long, the
// whole output of every test that failed, and, when nothing finished for a
// while, which tests are still running. It exits with go test's status.
//
//	go run ./internal/testprogress -race -count=1 ./...
//
// TESTPROGRESS_GO names the go command to test with (default: go); the
// Makefile passes its $(GO), so `make test GO=go1.27rc1` tests with that
// Go, down to the tests that run go themselves.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	slowTest  = 30 * time.Second // a passing test this long is named
	heartbeat = time.Minute      // quiet this long: say what still runs
)

// goVariable names the go command to test with.
const goVariable = "TESTPROGRESS_GO"

// event is one line of `go test -json` (test2json).
type event struct {
	Action string
	// ImportPath is set instead of Package on build events.
	ImportPath string
	Package    string
	Test       string
	Elapsed    float64
	Output     string
}

func main() {
	os.Exit(run(os.Getenv(goVariable), os.Args[1:], os.Stdout, os.Stderr))
}

// run runs `goCmd test -json args…`, prints its progress to stdout and
// returns the exit code: go test's, or 2 when it could not run.
func run(goCmd string, args []string, stdout, stderr io.Writer) int {
	cmd, err := goTest(goCmd, args)
	if err != nil {
		fmt.Fprintln(stderr, "testprogress:", err)
		return 2
	}
	cmd.Stderr = stderr // build errors
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(stderr, "testprogress:", err)
		return 2
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(stderr, "testprogress:", err)
		return 2
	}
	p := newPrinter(stdout)
	done := make(chan struct{})
	go p.beat(done) // owned by run: stops when done is closed
	p.read(out)
	close(done)
	err = cmd.Wait()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		fmt.Fprintf(stdout, "FAIL (%d packages, %s)\n", p.packages, time.Since(p.start).Round(time.Second))
		return exit.ExitCode()
	case err != nil:
		fmt.Fprintln(stderr, "testprogress:", err)
		return 2
	}
	fmt.Fprintf(stdout, "PASS (%d packages, %s)\n", p.packages, time.Since(p.start).Round(time.Second))
	return 0
}

// goTest returns the command `goCmd test -json args…` ("go" when goCmd is
// empty). The bin directory of goCmd's GOROOT leads its PATH, so a test
// that runs go itself (the benchmark builds chatfleet) uses the same Go.
func goTest(goCmd string, args []string) (*exec.Cmd, error) {
	if goCmd == "" {
		goCmd = "go"
	}
	root, err := exec.Command(goCmd, "env", "GOROOT").Output()
	if err != nil {
		return nil, fmt.Errorf("%s env GOROOT: %w", goCmd, err)
	}
	cmd := exec.Command(goCmd, append([]string{"test", "-json"}, args...)...)
	bin := filepath.Join(strings.TrimSpace(string(root)), "bin")
	// The last PATH in Env is the one used.
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	return cmd, nil
}

// printer turns test2json events into progress lines.
type printer struct {
	out   io.Writer
	start time.Time

	mu       sync.Mutex
	last     time.Time                      // when a line was last printed
	output   map[string]map[string][]string // package → test ("" for the package) → output
	running  map[string]map[string]bool     // package → top-level tests running
	packages int                            // packages finished
}

func newPrinter(out io.Writer) *printer {
	now := time.Now()
	return &printer{out: out, start: now, last: now, output: map[string]map[string][]string{}, running: map[string]map[string]bool{}}
}

func (p *printer) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var ev event
		switch {
		case json.Unmarshal(sc.Bytes(), &ev) != nil:
			p.print(sc.Text() + "\n") // not an event: pass it on
		case ev.Action == "build-output":
			p.print(ev.Output) // a compile error
		case ev.Package != "":
			p.handle(ev)
		}
	}
}

func (p *printer) handle(ev event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	top := ev.Test != "" && !strings.Contains(ev.Test, "/")
	test := ev.Test
	if i := strings.IndexByte(test, '/'); i >= 0 {
		test = test[:i] // a subtest's output belongs to its test
	}
	switch ev.Action {
	case "run":
		if top {
			p.runningIn(ev.Package)[ev.Test] = true
		}
	case "output":
		if p.output[ev.Package] == nil {
			p.output[ev.Package] = map[string][]string{}
		}
		p.output[ev.Package][test] = append(p.output[ev.Package][test], ev.Output)
	case "pass", "fail", "skip":
		if ev.Test == "" {
			p.finishPackage(ev)
			return
		}
		if !top {
			return
		}
		delete(p.runningIn(ev.Package), ev.Test)
		switch {
		case ev.Action == "fail":
			p.printLocked(strings.Join(p.output[ev.Package][ev.Test], ""))
		case ev.Action == "pass" && ev.Elapsed >= slowTest.Seconds():
			p.printLocked(fmt.Sprintf("     %s %s took %s\n", short(ev.Package), ev.Test, secs(ev.Elapsed)))
		}
		delete(p.output[ev.Package], ev.Test)
	}
}

func (p *printer) runningIn(pkg string) map[string]bool {
	if p.running[pkg] == nil {
		p.running[pkg] = map[string]bool{}
	}
	return p.running[pkg]
}

// finishPackage prints a package's result line; for a failure, the output
// no test claimed (a panic, a race report, a timeout) first.
func (p *printer) finishPackage(ev event) {
	p.packages++
	rest := p.output[ev.Package]
	delete(p.output, ev.Package)
	delete(p.running, ev.Package)
	switch ev.Action {
	case "fail":
		var lines []string
		for test, out := range rest {
			if test != "" {
				lines = append(lines, out...)
			}
		}
		lines = append(lines, rest[""]...)
		p.printLocked(strings.Join(lines, ""))
	case "skip":
		p.printLocked(fmt.Sprintf("?    %s [no test files]\n", ev.Package))
	default:
		p.printLocked(fmt.Sprintf("ok   %s %s\n", ev.Package, secs(ev.Elapsed)))
	}
}

// beat says what still runs whenever nothing was printed for heartbeat.
func (p *printer) beat(done <-chan struct{}) {
	t := time.NewTicker(heartbeat / 4)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		p.mu.Lock()
		if time.Since(p.last) >= heartbeat {
			var names []string
			for pkg, tests := range p.running {
				for test := range tests {
					names = append(names, short(pkg)+" "+test)
				}
			}
			slices.Sort(names)
			if len(names) > 0 {
				p.printLocked(fmt.Sprintf("     … %s: still running %s\n", time.Since(p.start).Round(time.Second), strings.Join(names, ", ")))
			}
		}
		p.mu.Unlock()
	}
}

func (p *printer) print(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.printLocked(s)
}

func (p *printer) printLocked(s string) {
	if s == "" {
		return
	}
	fmt.Fprint(p.out, s)
	p.last = time.Now()
}

// short drops the module path from a package name.
func short(pkg string) string {
	return strings.TrimPrefix(strings.TrimPrefix(pkg, "github.com/chatfleet/chatfleet"), "/")
}

func secs(s float64) string { return fmt.Sprintf("%.3fs", s) }
