package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/nats-io/nkeys"

	"github.com/chatfleet/chatfleet/subjects"
)

// authFlags are `chatfleet auth`'s flags.
type authFlags struct {
	fs                        *flag.FlagSet
	secrets, out, tenantsFile string
	listen, storeDir, url     string
	tlsCert, tlsKey, tlsCA    string
	nkeys                     bool
	workersNKey, opsNKey      string
	gatewayNKey               string
	toolsNKey, prepareNKey    string
}

func newAuthFlags(io IO) *authFlags {
	f := &authFlags{fs: flag.NewFlagSet("auth", flag.ContinueOnError)}
	fs := f.fs
	fs.SetOutput(io.Err)
	fs.StringVar(&f.secrets, "secrets", "", "directory of each identity's settings and secrets (required; created 0700, files 0600; secrets found there are kept)")
	fs.StringVar(&f.out, "out", "", "write the nats-server configuration to this file (default: stdout)")
	fs.StringVar(&f.tenantsFile, "tenants", "", "file of tenants, one a line: NAME, or NAME=NKEY for a public nkey its owner holds the seed of (# comments)")
	fs.StringVar(&f.listen, "listen", "0.0.0.0:4222", "the server's client address")
	fs.StringVar(&f.storeDir, "store-dir", "./data", "the server's JetStream directory")
	fs.StringVar(&f.url, "url", "", "NATS URL written into each identity's settings (CHATFLEET_NATS_URL)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "the server's TLS certificate file")
	fs.StringVar(&f.tlsKey, "tls-key", "", "the server's TLS key file")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "CA file of the clients' certificates: with it every client must present one (verify)")
	fs.BoolVar(&f.nkeys, "nkeys", false, "give new identities nkeys (seed files in --secrets) instead of passwords")
	fs.StringVar(&f.workersNKey, "workers-nkey", "", "the workers' public nkey, when they hold their seed already")
	fs.StringVar(&f.opsNKey, "operators-nkey", "", "the operators' public nkey, when they hold their seed already")
	fs.StringVar(&f.gatewayNKey, "gateway-nkey", "", "the gateways' public nkey, when they hold their seed already")
	fs.StringVar(&f.toolsNKey, "tools-nkey", "", "the tool servers' public nkey, when they hold their seed already")
	fs.StringVar(&f.prepareNKey, "prepare-nkey", "", "the preparation services' public nkey, when they hold their seed already")
	fs.Usage = func() {
		fmt.Fprintln(io.Err, "Usage: chatfleet auth --secrets DIR [flags] [TENANT[=NKEY] ...]")
		fmt.Fprintln(io.Err, "Writes the nats-server configuration of a fleet shared by tenants (the prefix is CHATFLEET_PREFIX),")
		fmt.Fprintln(io.Err, "and each identity's settings, secret included, to DIR: workers.env, operators.env, gateway.env,")
		fmt.Fprintln(io.Err, "tools.env (tool servers), prepare.env (preparation services), tenant-NAME.env.")
		fs.PrintDefaults()
	}
	return f
}

func runAuth(_ context.Context, args []string, io IO) int {
	f := newAuthFlags(io)
	if err := f.fs.Parse(args); err != nil {
		return ExitUsage
	}
	a, err := f.build()
	if err != nil {
		fmt.Fprintln(io.Err, "chatfleet auth:", err)
		return ExitUsage
	}
	if err := os.MkdirAll(f.secrets, 0o700); err != nil {
		fmt.Fprintln(io.Err, "chatfleet auth:", err)
		return ExitFailed
	}
	ids := a.identities()
	for _, id := range ids {
		if err := provide(f.secrets, id, f.nkeys); err != nil {
			fmt.Fprintln(io.Err, "chatfleet auth:", err)
			return ExitFailed
		}
	}
	// The configuration first: a run that fails to write it leaves the
	// settings of an earlier run as they were.
	var conf bytes.Buffer
	if err := a.write(&conf); err != nil {
		fmt.Fprintln(io.Err, "chatfleet auth:", err)
		return ExitFailed
	}
	if f.out == "" {
		_, err = io.Out.Write(conf.Bytes())
	} else {
		err = writePrivate(f.out, conf.Bytes())
	}
	if err != nil {
		fmt.Fprintln(io.Err, "chatfleet auth:", err)
		return ExitFailed
	}
	for _, id := range ids {
		if err := writePrivate(settingsPath(f.secrets, id), a.settings(id, f.url)); err != nil {
			fmt.Fprintln(io.Err, "chatfleet auth:", err)
			return ExitFailed
		}
	}
	a.summary(io, f, ids)
	return ExitOK
}

// build checks the flags and tenants and returns the authorization
// without secrets.
func (f *authFlags) build() (*fleetAuth, error) {
	if f.secrets == "" {
		return nil, errors.New("--secrets DIR is required: where each identity's settings and secret are written")
	}
	names, err := subjects.New(prefixFromEnv())
	if err != nil {
		return nil, fmt.Errorf("CHATFLEET_PREFIX: %w", err)
	}
	a := &fleetAuth{names: names, listen: f.listen, storeDir: f.storeDir}
	a.workers = identity{file: "workers", role: "the workers", user: names.Prefix() + "-workers"}
	a.operators = identity{file: "operators", role: "the operators", user: names.Prefix() + "-operators"}
	a.gateway = identity{file: "gateway", role: "the gateways", user: names.Prefix() + "-gateway"}
	a.tools = identity{file: "tools", role: "the tool servers", user: names.Prefix() + "-tools"}
	a.prepare = identity{file: "prepare", role: "the preparation services", user: names.Prefix() + "-prepare"}
	for _, k := range []struct {
		id  *identity
		key string
	}{{&a.workers, f.workersNKey}, {&a.operators, f.opsNKey}, {&a.gateway, f.gatewayNKey}, {&a.tools, f.toolsNKey}, {&a.prepare, f.prepareNKey}} {
		if k.key != "" && !nkeys.IsValidPublicUserKey(k.key) {
			return nil, fmt.Errorf("%s: %q is not a public user nkey (U…)", k.id.role, k.key)
		}
		k.id.nkey = k.key
	}
	switch {
	case (f.tlsCert == "") != (f.tlsKey == ""):
		return nil, errors.New("--tls-cert and --tls-key go together")
	case f.tlsCA != "" && f.tlsCert == "":
		return nil, errors.New("--tls-ca needs --tls-cert and --tls-key: the server's own certificate")
	case f.tlsCert != "":
		a.tls = &tlsFiles{cert: f.tlsCert, key: f.tlsKey, ca: f.tlsCA}
	}
	specs := f.fs.Args()
	if f.tenantsFile != "" {
		more, err := readTenantsFile(f.tenantsFile)
		if err != nil {
			return nil, err
		}
		specs = append(specs, more...)
	}
	for _, spec := range specs {
		t, err := parseTenant(spec)
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(a.tenants, func(o identity) bool { return o.tenant == t.tenant }) {
			return nil, fmt.Errorf("tenant %s is named twice", t.tenant)
		}
		t.user = names.Prefix() + "-tenant-" + t.tenant
		a.tenants = append(a.tenants, t)
	}
	slices.SortFunc(a.tenants, func(x, y identity) int { return strings.Compare(x.tenant, y.tenant) })
	return a, nil
}

// prefixFromEnv is CHATFLEET_PREFIX, or the default.
func prefixFromEnv() string {
	if p := os.Getenv("CHATFLEET_PREFIX"); p != "" {
		return p
	}
	return subjects.DefaultPrefix
}

// parseTenant reads NAME or NAME=NKEY.
func parseTenant(spec string) (identity, error) {
	name, key, _ := strings.Cut(strings.TrimSpace(spec), "=")
	if err := subjects.ValidName("tenant", name); err != nil {
		return identity{}, err
	}
	if key != "" && !nkeys.IsValidPublicUserKey(key) {
		return identity{}, fmt.Errorf("tenant %s: %q is not a public user nkey (U…)", name, key)
	}
	return identity{file: "tenant-" + name, role: "tenant " + name, tenant: name, nkey: key}, nil
}

// readTenantsFile reads one tenant a line; blank lines and # comments
// are skipped.
func readTenantsFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out, sc.Err()
}

// identities are every identity, the fleet account's first.
func (a *fleetAuth) identities() []*identity {
	ids := []*identity{&a.workers, &a.operators, &a.gateway, &a.tools, &a.prepare}
	for i := range a.tenants {
		ids = append(ids, &a.tenants[i])
	}
	return ids
}

// summary says what was written and what to do next; never a secret.
func (a *fleetAuth) summary(io IO, f *authFlags, ids []*identity) {
	where := "stdout"
	if f.out != "" {
		where = f.out
	}
	fmt.Fprintf(io.Err, "chatfleet auth: nats-server configuration for prefix %s written to %s (accounts %s and %d tenant accounts)\n",
		a.names.Prefix(), where, a.fleetAccount(), len(a.tenants))
	fmt.Fprintf(io.Err, "identities, in %s (give each process its own file; never commit them):\n", f.secrets)
	for _, id := range ids {
		what := "new password"
		switch {
		case id.kept:
			what = "kept from an earlier run"
		case id.seedFile != "":
			what = "new nkey, seed in " + id.seedFile
		case id.nkey != "":
			what = "the public nkey given; its owner holds the seed"
		}
		fmt.Fprintf(io.Err, "  %-28s %s (%s)\n", id.file+".env", id.role, what)
	}
	fmt.Fprintln(io.Err, "reload a running server to apply it: nats-server --signal reload")
}
