package harness

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process the benchmark started: a worker, the NATS
// server, redis-server, a peer process. Its stderr goes to a log file and
// is watched for a readiness line.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string

	readyOnce sync.Once
	ready     chan struct{} // closed when the ready line was seen
	exited    chan struct{} // closed when the process has exited
	waitErr   error
	stdout    bytes.Buffer // collected when keepStdout
}

// procSpec describes a child process.
type procSpec struct {
	name       string
	bin        string
	args       []string
	env        []string // added to a minimal environment
	logDir     string
	readyLine  string // substring of a stderr (or stdout) line that means "ready"; "" is ready at once
	keepStdout bool   // collect stdout in proc.stdout instead of the log
}

// startProc starts a child process. It is the caller's to stop.
func startProc(spec procSpec) (*proc, error) {
	p := &proc{name: spec.name, ready: make(chan struct{}), exited: make(chan struct{})}
	p.logPath = filepath.Join(spec.logDir, sanitizeFile(spec.name)+".log")
	logf, err := os.Create(p.logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(spec.bin, spec.args...)
	cmd.Env = append(baseEnv(), spec.env...)
	// Its own process group, so a Ctrl-C of the benchmark reaches it only
	// through us (we stop it in order) and never leaves it behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	var outPipe io.ReadCloser
	if spec.keepStdout {
		outPipe, err = cmd.StdoutPipe()
		if err != nil {
			logf.Close()
			return nil, err
		}
	} else {
		cmd.Stdout = logf
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", spec.name, err)
	}
	p.cmd = cmd
	if spec.readyLine == "" {
		p.markReady()
	}
	var pipes sync.WaitGroup
	pipes.Add(1)
	go func() { // owned by the process: ends when its stderr closes
		defer pipes.Done()
		p.logStderr(errPipe, logf, spec.readyLine)
	}()
	if outPipe != nil {
		pipes.Add(1)
		go func() { // owned by the process: ends when its stdout closes
			defer pipes.Done()
			_, _ = io.Copy(&p.stdout, outPipe)
		}()
	}
	go func() { // owned by the process: ends when it exits
		pipes.Wait()
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	return p, nil
}

// logStderr copies the process's stderr to its log line by line, marking
// it ready at a line that holds readyLine ("": never here).
func (p *proc) logStderr(stderr io.Reader, log io.Writer, readyLine string) {
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		_, _ = log.Write(append(line, '\n'))
		if readyLine != "" && bytes.Contains(line, []byte(readyLine)) {
			p.markReady()
		}
	}
}

func (p *proc) markReady() { p.readyOnce.Do(func() { close(p.ready) }) }

// baseEnv is the environment children inherit: PATH, HOME, Go's own
// variables and temp dir; never the benchmark's CHATFLEET_* settings.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "PATH", k == "HOME", k == "TMPDIR", k == "USER", k == "LANG",
			strings.HasPrefix(k, "GO"), strings.HasPrefix(k, "CGO"):
			env = append(env, kv)
		}
	}
	return env
}

// waitReady waits up to timeout for the ready line, the process's exit
// or ctx.
func (p *proc) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	select {
	case <-p.ready:
		return nil
	case <-p.exited:
		return fmt.Errorf("%s exited before it was ready (%v); log: %s\n%s", p.name, p.waitErr, p.logPath, p.tail(2000))
	case <-ctx.Done():
		return fmt.Errorf("%s not ready: %w; log: %s\n%s", p.name, ctx.Err(), p.logPath, p.tail(2000))
	}
}

// stop sends SIGTERM and waits up to grace, then kills. Safe to call twice.
func (p *proc) stop(grace time.Duration) error {
	select {
	case <-p.exited:
		return p.waitErr
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exited:
		return p.waitErr
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s did not stop within %s; killed", p.name, grace)
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// tail returns the last n bytes of the process's log.
func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitTCP waits until addr accepts connections.
func waitTCP(ctx context.Context, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			return c.Close()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s does not accept connections: %w", addr, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func sanitizeFile(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}
