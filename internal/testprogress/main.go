// Command testprogress runs `go test -json` with the arguments it is given
// and prints progress as packages finish, in the order they finish: one
// line per package (as go test prints it), the tests that took long, the
// whole output of every test that failed, and, when nothing finished for a
// while, which tests are still running. It exits with go test's status.
//
//	go run ./internal/testprogress -race -count=1 ./...
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	slowTest  = 30 * time.Second // a passing test this long is named
	heartbeat = time.Minute      // quiet this long: say what still runs
)

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
	cmd := exec.Command("go", append([]string{"test", "-json"}, os.Args[1:]...)...)
	cmd.Stderr = os.Stderr // build errors
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		fatal(err)
	}
	if err := cmd.Start(); err != nil {
		fatal(err)
	}
	p := newPrinter(os.Stdout)
	done := make(chan struct{})
	go p.beat(done) // owned by main: stops when done is closed
	p.read(stdout)
	close(done)
	err = cmd.Wait()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		fmt.Fprintf(os.Stdout, "FAIL (%d packages, %s)\n", p.packages, time.Since(p.start).Round(time.Second))
		os.Exit(exit.ExitCode())
	case err != nil:
		fatal(err)
	}
	fmt.Fprintf(os.Stdout, "PASS (%d packages, %s)\n", p.packages, time.Since(p.start).Round(time.Second))
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "testprogress:", err)
	os.Exit(2)
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
