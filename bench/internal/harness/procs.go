package harness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
		sc := bufio.NewScanner(errPipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = logf.Write(append(line, '\n'))
			if spec.readyLine != "" && bytes.Contains(line, []byte(spec.readyLine)) {
				p.markReady()
			}
		}
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

// clockTick is the unit of utime and stime in /proc/<pid>/stat: USER_HZ,
// which is 100 on every Linux the benchmark targets.
const clockTick = 10 * time.Millisecond

// procCPU returns the CPU time (user + system) process pid has used.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after it follow
	// its closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc stat format")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc stat format")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("unexpected /proc stat format")
	}
	return time.Duration(ut+st) * clockTick, nil
}

// selfCPU returns the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procRSS returns the resident set size of process pid, in bytes
// (VmRSS in /proc/<pid>/status).
func procRSS(pid int) (int64, error) { return procStatusBytes(pid, "VmRSS:") }

// procPeakRSS returns the peak resident set size of process pid (VmHWM),
// since it started or since its peak was reset through clear_refs.
func procPeakRSS(pid int) (int64, error) { return procStatusBytes(pid, "VmHWM:") }

// procStatusBytes reads a "<field> <n> kB" line of /proc/<pid>/status.
func procStatusBytes(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err != nil {
					return 0, err
				}
				return kb << 10, nil
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", strings.TrimSuffix(field, ":"), pid)
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

// cpuMeter measures the CPU time of processes over an interval. A
// process that has exited keeps the last value read for it.
type cpuMeter struct {
	start time.Time
	procs map[string][]int      // group name → pids
	base  map[int]time.Duration // pid → CPU at start
	last  map[int]time.Duration // pid → CPU when last read
	self  time.Duration         // this process's CPU at start
}

// startCPU starts measuring groups of processes (e.g. "workers", "nats")
// and this process ("bench").
func startCPU(groups map[string][]int) *cpuMeter {
	m := &cpuMeter{start: time.Now(), procs: groups, base: map[int]time.Duration{}, last: map[int]time.Duration{}, self: selfCPU()}
	for _, pids := range groups {
		for _, pid := range pids {
			c, _ := procCPU(pid)
			m.base[pid], m.last[pid] = c, c
		}
	}
	return m
}

// CPU is the CPU time used during a measurement, by process group, in
// seconds, and as cores busy on average.
type CPU struct {
	WallS  float64            `json:"wall_s"`
	CPUS   map[string]float64 `json:"cpu_s"`
	Cores  map[string]float64 `json:"cores"`
	TotalS float64            `json:"total_cpu_s"`
}

// stop returns the CPU used since start; it may be called more than once.
func (m *cpuMeter) stop() CPU {
	wall := time.Since(m.start)
	out := CPU{WallS: round3(wall.Seconds()), CPUS: map[string]float64{}, Cores: map[string]float64{}}
	add := func(g string, d time.Duration) {
		out.CPUS[g] = round3(d.Seconds())
		out.Cores[g] = round3(d.Seconds() / wall.Seconds())
		out.TotalS += d.Seconds()
	}
	for g, pids := range m.procs {
		var c time.Duration
		for _, pid := range pids {
			if v, err := procCPU(pid); err == nil {
				m.last[pid] = v
			}
			c += m.last[pid] - m.base[pid]
		}
		add(g, c)
	}
	add("bench", selfCPU()-m.self)
	out.TotalS = round3(out.TotalS)
	return out
}
