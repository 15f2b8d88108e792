//go:build faults

package faults

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// proxy forwards TCP connections to a server, so a test can partition a
// client from it: drop what the server sends (requests still arrive, their
// answers are lost) and cut every connection (the client reconnects
// through the proxy).
type proxy struct {
	ln     net.Listener
	target string
	drop   atomic.Bool // discard what the server sends

	watchMu sync.Mutex
	watches []watch

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup // the accept loop and every copy
}

// newProxy listens on a free port and forwards to target (host:port)
// until the test ends.
func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept() // owned by the proxy: close stops it
	t.Cleanup(p.close)
	return p
}

// URL is the address clients connect to.
func (p *proxy) URL() string { return "nats://" + p.ln.Addr().String() }

// dropFromServer starts (true) or stops discarding what the server sends.
func (p *proxy) dropFromServer(on bool) { p.drop.Store(on) }

// watch is a byte string awaited in what clients send.
type watch struct {
	what []byte
	seen chan struct{}
}

// sent returns a channel closed once a client sends what (within one
// read: a short string, such as a subject, rarely spans two).
func (p *proxy) sent(what string) <-chan struct{} {
	p.watchMu.Lock()
	defer p.watchMu.Unlock()
	w := watch{what: []byte(what), seen: make(chan struct{})}
	p.watches = append(p.watches, w)
	return w.seen
}

// saw closes the watches b matches.
func (p *proxy) saw(b []byte) {
	p.watchMu.Lock()
	defer p.watchMu.Unlock()
	kept := p.watches[:0]
	for _, w := range p.watches {
		if bytes.Contains(b, w.what) {
			close(w.seen)
			continue
		}
		kept = append(kept, w)
	}
	p.watches = kept
}

// cut closes every connection through the proxy; new ones are accepted.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

func (p *proxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cut()
	p.wg.Wait()
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		if !p.track(client, server) {
			_ = client.Close()
			_ = server.Close()
			return
		}
		p.wg.Add(2)
		go p.pipe(server, client, nil, p.saw)   // client to server
		go p.pipe(client, server, &p.drop, nil) // server to client
	}
}

// track registers a pair of connections; false when the proxy is closed.
func (p *proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

// pipe copies src to dst until either fails, discarding while drop is
// set and showing every read to observe, then closes both.
func (p *proxy) pipe(dst, src net.Conn, drop *atomic.Bool, observe func([]byte)) {
	defer p.wg.Done()
	defer func() {
		_ = dst.Close()
		_ = src.Close()
		p.mu.Lock()
		delete(p.conns, dst)
		delete(p.conns, src)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && observe != nil {
			observe(buf[:n])
		}
		if n > 0 && (drop == nil || !drop.Load()) {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF, or cut
		}
	}
}
