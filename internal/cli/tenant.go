package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/subjects"
)

const tenantUsage = `Usage:
  chatfleet tenant set NAME [--max-queued N] [--max-inflight N] [--tokens-per-minute N]
                            [--tokens-per-day N] [--on-limit wait|reject]
                                     set a tenant's limits (0 removes one); every worker applies them at once
  chatfleet tenant ls [--json]       every tenant in the tenants bucket, with its limits
  chatfleet tenant show NAME [--json]
                                     a tenant's limits, and its usage now and since each worker started
  chatfleet tenant pause NAME        its jobs wait when pulled, other tenants' run
  chatfleet tenant resume NAME       its waiting jobs go on
  chatfleet tenant cancel NAME       cancel every request of the tenant, queued or running
  chatfleet tenant rm NAME           remove its limits and state (its jobs then run without limits)`

// tenantFlags are every subcommand's flags; each takes those it needs.
type tenantFlags struct {
	fs                                 *flag.FlagSet
	maxQueued, tokensMinute, tokensDay int64
	maxInflight                        int
	onLimit                            string
	asJSON                             bool
	wait                               time.Duration
	limits                             map[string]bool // the limit flags given
	positional                         []string
	sub                                string
}

func newTenantFlags(sub string, io IO) *tenantFlags {
	f := &tenantFlags{fs: flag.NewFlagSet("tenant "+sub, flag.ContinueOnError), sub: sub, limits: map[string]bool{}}
	f.fs.SetOutput(io.Err)
	f.fs.Usage = func() { fmt.Fprintln(io.Err, tenantUsage) }
	f.fs.Int64Var(&f.maxQueued, "max-queued", 0, "most jobs of the tenant in the jobs stream (set)")
	f.fs.IntVar(&f.maxInflight, "max-inflight", 0, "most generations of the tenant at the upstream at once, fleet-wide (set)")
	f.fs.Int64Var(&f.tokensMinute, "tokens-per-minute", 0, "most upstream tokens in a UTC minute (set)")
	f.fs.Int64Var(&f.tokensDay, "tokens-per-day", 0, "most upstream tokens in a UTC day (set)")
	f.fs.StringVar(&f.onLimit, "on-limit", "", "at the in-flight or token limit: wait, or reject with quota_exceeded (set)")
	f.fs.BoolVar(&f.asJSON, "json", false, "print JSON (ls, show)")
	f.fs.DurationVar(&f.wait, "wait", 500*time.Millisecond, "how long to collect workers' answers (show)")
	return f
}

// parse parses args, flags before, between and after the positional ones.
func (f *tenantFlags) parse(args []string) error {
	for {
		if err := f.fs.Parse(args); err != nil {
			return err
		}
		if f.fs.NArg() == 0 {
			break
		}
		f.positional = append(f.positional, f.fs.Arg(0))
		args = f.fs.Args()[1:]
	}
	f.fs.Visit(func(fl *flag.Flag) {
		if fl.Name != "json" && fl.Name != "wait" {
			f.limits[fl.Name] = true
		}
	})
	return nil
}

// check validates the parsed command line; the tenant's name, or "" for
// ls.
func (f *tenantFlags) check(io IO) (string, int) {
	want := 1
	if f.sub == "ls" {
		want = 0
	}
	if len(f.positional) != want || (f.sub != "set" && len(f.limits) > 0) {
		fmt.Fprintln(io.Err, tenantUsage)
		return "", ExitUsage
	}
	if f.maxQueued < 0 || f.maxInflight < 0 || f.tokensMinute < 0 || f.tokensDay < 0 {
		fmt.Fprintln(io.Err, "chatfleet tenant: limits must not be negative (0 removes one)")
		return "", ExitUsage
	}
	if f.onLimit != "" && f.onLimit != protocol.OnLimitWait && f.onLimit != protocol.OnLimitReject {
		fmt.Fprintf(io.Err, "chatfleet tenant: --on-limit must be %s or %s, got %q\n", protocol.OnLimitWait, protocol.OnLimitReject, f.onLimit)
		return "", ExitUsage
	}
	if want == 0 {
		return "", ExitOK
	}
	if err := subjects.ValidName("tenant", f.positional[0]); err != nil {
		fmt.Fprintln(io.Err, "chatfleet tenant:", err)
		return "", ExitUsage
	}
	return f.positional[0], ExitOK
}

// apply sets the limits given on the command line.
func (f *tenantFlags) apply(t *protocol.Tenant) {
	for name := range f.limits {
		switch name {
		case "max-queued":
			t.MaxQueued = f.maxQueued
		case "max-inflight":
			t.MaxInflight = f.maxInflight
		case "tokens-per-minute":
			t.TokensPerMinute = f.tokensMinute
		case "tokens-per-day":
			t.TokensPerDay = f.tokensDay
		case "on-limit":
			t.OnLimit = f.onLimit
		}
	}
}

// runTenant manages tenants: their limits and state in the tenants bucket.
func runTenant(ctx context.Context, args []string, io IO) int {
	if len(args) == 0 || !slices.Contains([]string{"set", "ls", "show", "pause", "resume", "cancel", "rm"}, args[0]) {
		fmt.Fprintln(io.Err, tenantUsage)
		return ExitUsage
	}
	f := newTenantFlags(args[0], io)
	if err := f.parse(args[1:]); err != nil {
		return ExitUsage
	}
	name, code := f.check(io)
	if code != ExitOK {
		return code
	}
	_, names, nc, code := connect(io, "tenant")
	if code != ExitOK {
		return code
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := tenantCommand(ctx, nc, names, f, name, io); err != nil {
		fmt.Fprintln(io.Err, "chatfleet tenant:", err)
		return ExitFailed
	}
	return ExitOK
}

func tenantCommand(ctx context.Context, nc *nats.Conn, names subjects.Names, f *tenantFlags, name string, io IO) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	kv, err := js.KeyValue(ctx, names.TenantsBucket())
	if err != nil {
		return fmt.Errorf("bucket %s: %w (%s)", names.TenantsBucket(), err, topologyHint)
	}
	store := tenantStore{kv: kv, names: names}
	switch f.sub {
	case "set":
		t, rev, err := store.update(ctx, name, f.apply)
		if err != nil {
			return err
		}
		confirmApplied(ctx, nc, names.Prefix(), rev, io)
		fmt.Fprintf(io.Out, "tenant %s: %s\n", name, describeLimits(t))
		return nil
	case "pause", "resume":
		_, rev, err := store.update(ctx, name, func(t *protocol.Tenant) { t.Paused = f.sub == "pause" })
		if err != nil {
			return err
		}
		confirmApplied(ctx, nc, names.Prefix(), rev, io)
		fmt.Fprintf(io.Out, "tenant %s %sd\n", name, f.sub)
		return nil
	case "rm":
		return store.remove(ctx, name, io)
	case "ls":
		return listTenants(ctx, store, f.asJSON, io)
	case "show":
		return showTenant(ctx, nc, js, store, name, f, io)
	default:
		return cancelTenant(ctx, js, names, name, io)
	}
}

// tenantStore reads and writes the tenants bucket.
type tenantStore struct {
	kv    jetstream.KeyValue
	names subjects.Names
}

// get returns tenant's entry and its revision; found is false when the
// bucket holds none.
func (s tenantStore) get(ctx context.Context, name string) (t protocol.Tenant, rev uint64, found bool, err error) {
	e, err := s.kv.Get(ctx, s.names.TenantKey(name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return protocol.Tenant{V: protocol.TenantVersion}, 0, false, nil
	}
	if err != nil {
		return t, 0, false, err
	}
	t, err = protocol.DecodeTenant(e.Value())
	return t, e.Revision(), true, err
}

// update changes tenant's entry with compare-and-swap, creating it if
// missing, and returns what it wrote.
func (s tenantStore) update(ctx context.Context, name string, change func(*protocol.Tenant)) (protocol.Tenant, uint64, error) {
	for {
		t, rev, found, err := s.get(ctx, name)
		if err != nil {
			return t, 0, fmt.Errorf("tenant %s: %w", name, err)
		}
		change(&t)
		t.V, t.Updated = max(t.V, protocol.TenantVersion), time.Now().UTC()
		b, err := json.Marshal(t)
		if err != nil {
			return t, 0, err
		}
		if found {
			rev, err = s.kv.Update(ctx, s.names.TenantKey(name), b, rev)
		} else {
			rev, err = s.kv.Create(ctx, s.names.TenantKey(name), b)
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return t, rev, err
		}
		// Someone else changed it meanwhile: apply ours to theirs.
	}
}

// remove deletes tenant's entry and its token windows.
func (s tenantStore) remove(ctx context.Context, name string, io IO) error {
	if _, _, found, err := s.get(ctx, name); err != nil || !found {
		if err == nil {
			err = fmt.Errorf("no tenant %s in the tenants bucket", name)
		}
		return err
	}
	for _, key := range []string{s.names.TenantKey(name), s.names.TenantTokensKey(name)} {
		if err := s.kv.Purge(ctx, key); err != nil {
			return err
		}
	}
	fmt.Fprintf(io.Out, "tenant %s removed: its jobs run without limits, its usage is counted as (other)\n", name)
	return nil
}

// describeLimits is a tenant's entry in one line.
func describeLimits(t protocol.Tenant) string {
	limit := func(n int64) string {
		if n <= 0 {
			return "none"
		}
		return fmt.Sprint(n)
	}
	state := "active"
	if t.Paused {
		state = "paused"
	}
	onLimit := t.OnLimit
	if onLimit == "" {
		onLimit = protocol.OnLimitWait
	}
	return fmt.Sprintf("%s · max queued %s · max in flight %s · tokens/minute %s · tokens/day %s · at a limit: %s", state,
		limit(t.MaxQueued), limit(int64(t.MaxInflight)), limit(t.TokensPerMinute), limit(t.TokensPerDay), onLimit)
}

// tenantRow is what ls shows of one tenant.
type tenantRow struct {
	Name   string          `json:"tenant"`
	Limits protocol.Tenant `json:"limits"`
}

func listTenants(ctx context.Context, s tenantStore, asJSON bool, io IO) error {
	keys, err := s.kv.ListKeysFiltered(ctx, s.names.AllTenantKeys())
	if err != nil {
		return err
	}
	var rows []tenantRow
	for key := range keys.Keys() {
		t, _, found, err := s.get(ctx, key)
		if err != nil {
			fmt.Fprintf(io.Err, "chatfleet tenant: %s: %v\n", key, err)
			continue
		}
		if found {
			rows = append(rows, tenantRow{Name: key, Limits: t})
		}
	}
	slices.SortFunc(rows, func(a, b tenantRow) int { return strings.Compare(a.Name, b.Name) })
	return printRows(io, rows, asJSON, "no tenants in the tenants bucket: every tenant runs without limits", "TENANT\tLIMITS",
		func(r tenantRow) string { return r.Name + "\t" + describeLimits(r.Limits) })
}
