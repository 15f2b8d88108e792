package deploytest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// process is a chatfleet process a test started, stopped at its cleanup.
type process struct {
	name   string
	cmd    *exec.Cmd
	out    *lockedBuffer
	exited chan struct{} // closed once it has exited
}

// startProcess runs bin with exactly env (nothing of the test's own
// environment leaks in) and stops it with SIGTERM at the test's end.
func startProcess(t *testing.T, name, bin string, env map[string]string, args ...string) *process {
	t.Helper()
	p := &process{name: name, cmd: exec.Command(bin, args...), out: &lockedBuffer{}, exited: make(chan struct{})}
	p.cmd.Env = []string{}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		p.cmd.Env = append(p.cmd.Env, k+"="+env[k])
	}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { // owned by the cleanup below, which waits for exited
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(60 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
			t.Errorf("%s did not stop within 60s of SIGTERM", name)
		}
		if t.Failed() {
			t.Logf("%s's output:\n%s", name, p.out)
		}
	})
	return p
}

// waitFor polls check until it succeeds, failing t when p exits first.
func (p *process) waitFor(t *testing.T, what string, check func() error) {
	t.Helper()
	poll(t, p.name, what, check, func() error {
		select {
		case <-p.exited:
			return fmt.Errorf("exited\n%s", p.out)
		default:
			return nil
		}
	})
}

// poll calls check until it succeeds: a process's or a container's port
// has nothing to wait on but itself. It fails t at once when check says
// the path is not served or gone says who has stopped, and after a
// generous deadline.
func poll(t *testing.T, who, what string, check, gone func() error) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		err := check()
		switch {
		case err == nil:
			return
		case errors.Is(err, errNotServed):
			t.Fatalf("%s: %v", who, err)
		}
		if stopped := gone(); stopped != nil {
			t.Fatalf("%s before %s (%v): %v", who, what, err, stopped)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s within 90s: %v", who, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// errNotServed: the process answers, but not at that path.
var errNotServed = errors.New("not served")

// httpOK is nil when GET url answers 200.
func httpOK(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
		return fmt.Errorf("%w: GET %s: %d %s", errNotServed, url, resp.StatusCode, body)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return nil
}

// tcpOpen is nil when addr accepts a connection.
func tcpOpen(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// freeAddr is a 127.0.0.1 address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// lockedBuffer is a process's output, written by exec's copier and read
// by the test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
