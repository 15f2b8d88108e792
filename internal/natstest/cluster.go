package natstest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/natsserver"
)

// Cluster is an in-process JetStream cluster: servers with distinct names
// and stores, each routed to every other.
type Cluster struct {
	// Name is the cluster's name.
	Name string
	// Servers are the members, in start order, including any shut down.
	Servers []*natsserver.Server
}

// RunCluster starts a JetStream cluster of n servers for t and waits until
// it is ready (see WaitReady). Every server is shut down in t.Cleanup.
func RunCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	return RunClusterWith(t, n, nil)
}

// RunClusterWith is RunCluster with each member's configuration adjusted
// by tune, when not nil: a configuration file to start from (chatfleet
// auth's accounts and users), server options.
func RunClusterWith(t testing.TB, n int, tune func(*natsserver.Config)) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("natstest: a cluster needs at least one server, got %d", n)
	}
	c := &Cluster{Name: "chatfleet-" + strconv.FormatInt(time.Now().UnixNano()%1e6, 36)}
	// Every member lists every route (its own is ignored), as a cluster's
	// config file would, so each knows the cluster's size from the start.
	ports := freePorts(t, n)
	routes := make([]string, n)
	for i, p := range ports {
		routes[i] = "nats-route://127.0.0.1:" + strconv.Itoa(p)
	}
	for i := range n {
		cfg := natsserver.Config{
			Name:     fmt.Sprintf("%s-n%d", c.Name, i+1),
			StoreDir: t.TempDir(),
			Cluster: &natsserver.ClusterConfig{
				Name:   c.Name,
				Listen: "127.0.0.1:" + strconv.Itoa(ports[i]),
				Routes: routes,
			},
		}
		if tune != nil {
			tune(&cfg)
		}
		s, err := natsserver.Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Shutdown)
		c.Servers = append(c.Servers, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx, n); err != nil {
		t.Fatal(err)
	}
	return c
}

// freePorts returns n distinct ports that were free a moment ago.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close() // held until all are chosen, so they differ
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// URLs returns the client URLs of every member, comma-separated, the form
// nats.Connect takes to fail over between servers.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		urls[i] = s.ClientURL()
	}
	return strings.Join(urls, ",")
}

// Server returns the member named name, or nil.
func (c *Cluster) Server(name string) *natsserver.Server {
	for _, s := range c.Servers {
		if s.NATS().Name() == name {
			return s
		}
	}
	return nil
}

// Running returns the members that have not been shut down.
func (c *Cluster) Running() []*natsserver.Server {
	var out []*natsserver.Server
	for _, s := range c.Servers {
		if s.NATS().Running() {
			out = append(out, s)
		}
	}
	return out
}

// MetaLeader returns the running member that leads the JetStream meta
// group, or nil while there is none.
func (c *Cluster) MetaLeader() *natsserver.Server {
	for _, s := range c.Running() {
		if s.NATS().JetStreamIsLeader() {
			return s
		}
	}
	return nil
}

// WaitReady waits until JetStream is usable with peers servers online: a
// meta leader that counts peers online peers, and every running member
// current with the meta group. The server offers no signal for this, so it
// polls until ctx ends.
func (c *Cluster) WaitReady(ctx context.Context, peers int) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if c.ready(peers) {
			return nil
		}
		select {
		case <-ctx.Done():
			online := 0
			if l := c.MetaLeader(); l != nil {
				online = len(l.NATS().JetStreamClusterPeers())
			}
			return fmt.Errorf("natstest: cluster %s not ready with %d peers (meta leader sees %d online): %w", c.Name, peers, online, ctx.Err())
		case <-tick.C:
		}
	}
}

func (c *Cluster) ready(peers int) bool {
	l := c.MetaLeader()
	if l == nil || len(l.NATS().JetStreamClusterPeers()) != peers {
		return false
	}
	for _, s := range c.Running() {
		if !s.NATS().JetStreamIsCurrent() {
			return false
		}
	}
	return true
}
