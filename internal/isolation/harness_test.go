package isolation_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/cli"
	"github.com/chatfleet/chatfleet/internal/config"
	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natsserver"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/manager"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/subjects"
	"github.com/chatfleet/chatfleet/topology"
	"github.com/chatfleet/chatfleet/worker"
)

// The tenants of the shared fleet: A's requests are what B attacks.
const (
	tenantA = "acme"
	tenantB = "beta"
)

// queuedCap is the most jobs one tenant may have in the jobs stream.
const queuedCap = 5

// fleet is a fleet shared by two tenants on a server started from the
// configuration `chatfleet auth` generated, every process connected with
// the identity it generated for it.
type fleet struct {
	nats   *natsserver.Server
	llm    *llmtest.Server
	names  subjects.Names
	top    *topology.Topology // on the operators' connection
	ops    *nats.Conn
	opsPub *publisher.Publisher
	pubA   *publisher.Publisher
	pubB   *publisher.Publisher
	envs   map[string]config.Env        // by settings file: workers, operators, gateway, tools, prepare, tenant-acme, tenant-beta
	vars   map[string]map[string]string // the same settings as variables, for the CLI
	gates  *gates
}

// newFleet generates the configuration and identities, starts the
// server from it, creates the topology as the operators and starts two
// workers as the workers.
func newFleet(t *testing.T) *fleet {
	t.Helper()
	dir := t.TempDir()
	conf, secrets := filepath.Join(dir, "nats.conf"), filepath.Join(dir, "secrets")
	var out, errb bytes.Buffer
	args := []string{"auth", "--nkeys", "--secrets", secrets, "--out", conf, tenantA, tenantB}
	if code := cli.Run(context.Background(), args, cli.IO{In: strings.NewReader(""), Out: &out, Err: &errb}); code != cli.ExitOK {
		t.Fatalf("chatfleet auth: exit %d\n%s", code, errb.String())
	}
	f := &fleet{names: subjects.Default(), envs: map[string]config.Env{}, vars: map[string]map[string]string{}, gates: newGates()}
	f.nats = natstest.RunServerFromConfig(t, conf)
	for _, name := range []string{"workers", "operators", "gateway", "tools", "prepare", "tenant-" + tenantA, "tenant-" + tenantB} {
		f.envs[name], f.vars[name] = settings(t, filepath.Join(secrets, name+".env"), f.nats.ClientURL())
	}
	f.llm = llmtest.New(llmtest.WithScript(f.gates.reply))
	t.Cleanup(f.llm.Close)

	ctx := fleettest.Context(t, 30*time.Second)
	f.ops = f.connect(t, "operators")
	js, err := jetstream.New(f.ops)
	if err != nil {
		t.Fatal(err)
	}
	if f.top, err = topology.Ensure(ctx, js, topology.Config{MaxQueuedPerTenant: queuedCap}); err != nil {
		t.Fatalf("the operators create the topology (chatfleet init): %v", err)
	}
	f.opsPub = f.publisher(t, "operators")
	f.pubA = f.publisher(t, "tenant-"+tenantA)
	// B's publisher is refused on purpose (attacks): not the default
	// handler's lines on stderr.
	f.pubB = f.publisher(t, "tenant-"+tenantB, nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	for _, id := range []string{"w1", "w2"} {
		f.startWorker(t, id)
	}
	return f
}

// settings reads an identity's settings file, as a process that sources
// it would, pointed at url; it returns them as variables too.
func settings(t *testing.T, path, url string) (config.Env, map[string]string) {
	t.Helper()
	vars, err := config.ReadSettings(path)
	if err != nil || vars == nil {
		t.Fatalf("settings %s: %v", path, err)
	}
	vars["CHATFLEET_NATS_URL"] = url
	return config.Env{NATSURL: url}.WithSettings(vars), vars
}

// cli runs a chatfleet command as the identity of a settings file (its
// variables set for the test), failing the test unless it exits 0; it
// returns what the command printed.
func (f *fleet) cli(t *testing.T, identity string, args ...string) string {
	t.Helper()
	for k, v := range f.vars[identity] {
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	if code := cli.Run(fleettest.Context(t, 20*time.Second), args, cli.IO{In: strings.NewReader(""), Out: &out, Err: &errb}); code != cli.ExitOK {
		t.Fatalf("chatfleet %s as %s: exit %d\n%s", strings.Join(args, " "), identity, code, errb.String())
	}
	return out.String()
}

// connect opens a connection as the identity of a settings file, closed
// when the test ends.
func (f *fleet) connect(t *testing.T, identity string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := f.envs[identity].Connect("isolation test "+identity, false, opts...)
	if err != nil {
		t.Fatalf("connect as %s: %v", identity, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// publisher is a publisher configured by the identity's settings, on a
// connection with natsOpts.
func (f *fleet) publisher(t *testing.T, identity string, natsOpts ...nats.Option) *publisher.Publisher {
	t.Helper()
	opts := append(f.envs[identity].Publisher(), publisher.WithIdleProbe(500*time.Millisecond))
	p, err := publisher.New(f.connect(t, identity, natsOpts...), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (f *fleet) startWorker(t *testing.T, id string) {
	t.Helper()
	cfg := worker.Config{ID: id, Topology: topology.Config{MaxQueuedPerTenant: queuedCap}, LLM: llm.Config{BaseURL: f.llm.URL(), APIKey: "test-key"}, Manager: manager.Config{DefaultModel: "m"},
		FetchWait: 250 * time.Millisecond, Logger: fleettest.Logger()}
	w, err := worker.New(cfg, f.connect(t, "workers"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Start(ctx); err != nil {
		t.Fatalf("a worker with the workers' identity: %v", err)
	}
	t.Cleanup(func() { fleettest.StopWorker(t, w) })
}

// job is a request of tenant with prompt.
func job(tenant, id, prompt string) protocol.Job {
	return protocol.Job{Tenant: tenant, ID: id, Model: "m",
		Messages: []protocol.Message{{Role: protocol.RoleUser, Content: protocol.TextContent(prompt)}}}
}

// gates holds back the upstream's answer to a prompt that starts with
// "hold:" after its first token, until the test opens its gate. The
// upstream calls the tools a request offers.
type gates struct {
	mu sync.Mutex
	ch map[string]chan struct{}
}

func newGates() *gates { return &gates{ch: map[string]chan struct{}{}} }

func (g *gates) gate(prompt string) chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ch[prompt] == nil {
		g.ch[prompt] = make(chan struct{})
	}
	return g.ch[prompt]
}

// open lets the held answers to prompt go on. Safe to call twice.
func (g *gates) open(prompt string) {
	ch := g.gate(prompt)
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-ch:
	default:
		close(ch)
	}
}

func (g *gates) reply(r llmtest.Request) llmtest.Reply {
	// A model that uses the fleet tools a job offers (tools_test.go).
	if rep, ok := llmtest.ToolUseReply(r, 0); ok {
		return rep
	}
	rep := llmtest.DefaultReply(r)
	if p := r.LastUserMessage(); strings.HasPrefix(p, "hold:") {
		rep.StallAfter, rep.Release = 1, g.gate(p)
	}
	return rep
}

// held submits a request of tenant whose answer is held after its first
// token; the gate is opened when the test ends at the latest.
func (f *fleet) held(t *testing.T, pub *publisher.Publisher, tenant, id string) (*publisher.Reply, string) {
	t.Helper()
	prompt := "hold:" + tenant + ":" + id
	t.Cleanup(func() { f.gates.open(prompt) })
	r, err := pub.Submit(fleettest.Context(t, 10*time.Second), job(tenant, id, prompt))
	if err != nil {
		t.Fatalf("submit %s/%s: %v", tenant, id, err)
	}
	t.Cleanup(r.Stop)
	return r, prompt
}

// next reads the reply's next event within 10s.
func next(t *testing.T, r *publisher.Reply) protocol.Event {
	t.Helper()
	ev, err := r.Next(fleettest.Context(t, 10*time.Second))
	if err != nil {
		t.Fatalf("next event of %s/%s: %v", r.Tenant(), r.ID(), err)
	}
	return ev
}

// untilType reads the reply until an event of type typ, which it returns.
func untilType(t *testing.T, r *publisher.Reply, typ protocol.EventType) protocol.Event {
	t.Helper()
	for {
		if ev := next(t, r); ev.Type == typ {
			return ev
		} else if ev.Type.Terminal() {
			t.Fatalf("%s/%s ended with %s before a %s event: %+v", r.Tenant(), r.ID(), ev.Type, typ, ev)
		}
	}
}

// errorsOf is a connection's asynchronous errors: the server's refusals.
type errorsOf chan error

func (e errorsOf) handler() nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case e <- err:
		default:
		}
	})
}

// refusal waits for the server's refusal of something the connection did.
func (e errorsOf) refusal(t *testing.T) error {
	t.Helper()
	select {
	case err := <-e:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the server refused nothing within 10s")
		return nil
	}
}

var errPermission = nats.ErrPermissionViolation

// isPermissionViolation reports a refusal of a publish or a subscription.
func isPermissionViolation(err error) bool {
	return errors.Is(err, errPermission) || strings.Contains(err.Error(), "Permissions Violation")
}
