package cli_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/cli"
	"github.com/chatfleet/chatfleet/internal/config"
	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/topology"
)

// readSettings reads an identity's settings file into a config.Env, as
// a process that sources it would see it, and returns its variables.
func readSettings(t *testing.T, path string) (config.Env, map[string]string) {
	t.Helper()
	vars, err := config.ReadSettings(path)
	if err != nil || vars == nil {
		t.Fatalf("settings %s: %v", path, err)
	}
	return config.Env{}.WithSettings(vars), vars
}

// TestAuthGeneratesAServerConfigAndKeepsSecrets: `chatfleet auth` writes
// a configuration nats-server starts from, and one settings file per
// identity (0600, in a 0700 directory) with which each connects; no
// secret appears in the configuration or on the terminal. Run again with
// one more tenant it keeps every existing secret.
func TestAuthGeneratesAServerConfigAndKeepsSecrets(t *testing.T) {
	t.Setenv("CHATFLEET_PREFIX", "acme.chat")
	dir := t.TempDir()
	secrets, conf := filepath.Join(dir, "secrets"), filepath.Join(dir, "nats.conf")
	ctx := fleettest.Context(t, 30*time.Second)

	res := run(ctx, "", "auth", "--secrets", secrets, "--out", conf, "--url", "nats://fleet.example:4222", "alpha", "beta")
	if res.code != cli.ExitOK {
		t.Fatalf("auth: %v", res)
	}
	if fi, err := os.Stat(secrets); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("secrets directory: %v, %v; want mode 0700", fi.Mode(), err)
	}
	passwords := checkSettingsFiles(t, secrets, conf, res)
	if _, vars := readSettings(t, filepath.Join(secrets, "tenant-alpha.env")); vars["CHATFLEET_NATS_JS_API_PREFIX"] != "JS.acme.chat.API" {
		t.Errorf("a tenant's API prefix = %q, want JS.acme.chat.API", vars["CHATFLEET_NATS_JS_API_PREFIX"])
	}

	s := natstest.RunServerFromConfig(t, conf)
	for _, name := range []string{"workers.env", "operators.env", "tools.env", "prepare.env", "tenant-alpha.env"} {
		env, _ := readSettings(t, filepath.Join(secrets, name))
		env.NATSURL = s.ClientURL()
		nc, err := env.Connect("auth test", false)
		if err != nil {
			t.Fatalf("connect with %s: %v", name, err)
		}
		nc.Close()
	}
	ops, _ := readSettings(t, filepath.Join(secrets, "operators.env"))
	ops.NATSURL = s.ClientURL()
	nc, err := ops.Connect("auth test", false)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Errorf("the operators have no JetStream: %v", err)
	}

	res = run(ctx, "", "auth", "--secrets", secrets, "--out", conf, "gamma", "alpha", "beta")
	if res.code != cli.ExitOK {
		t.Fatalf("auth again: %v", res)
	}
	for name, pw := range passwords {
		if env, _ := readSettings(t, filepath.Join(secrets, name)); env.NATSPassword != pw {
			t.Errorf("%s: the password changed on the second run", name)
		}
	}
	if !strings.Contains(res.err, "tenant-gamma.env") || !strings.Contains(res.err, "kept from an earlier run") {
		t.Errorf("the summary does not say what was kept and what is new:\n%s", res.err)
	}
}

// checkSettingsFiles checks that auth wrote each identity's settings file
// (0600) with a password, the prefix and the URL, and that no password
// appears in the configuration or the command's output. It returns the
// passwords by file.
func checkSettingsFiles(t *testing.T, secrets, conf string, res result) map[string]string {
	t.Helper()
	confText, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	passwords := map[string]string{}
	for _, name := range []string{"workers.env", "operators.env", "gateway.env", "tools.env", "prepare.env", "tenant-alpha.env", "tenant-beta.env"} {
		path := filepath.Join(secrets, name)
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v; want mode 0600", name, err)
		}
		env, vars := readSettings(t, path)
		if env.NATSPassword == "" || env.Prefix != "acme.chat" || vars["CHATFLEET_NATS_URL"] != "nats://fleet.example:4222" {
			t.Errorf("%s lacks a password, the prefix or the URL: %v", name, vars)
		}
		for _, where := range []string{string(confText), res.out, res.err} {
			if strings.Contains(where, env.NATSPassword) {
				t.Errorf("the password of %s appears outside its settings file", name)
			}
		}
		passwords[name] = env.NATSPassword
	}
	return passwords
}

// TestAuthNKeys: with --nkeys new identities get an nkey seed file, which
// is what their settings point at, and they connect with it; a public key
// given for a tenant is used as it is.
func TestAuthNKeys(t *testing.T) {
	t.Setenv("CHATFLEET_PREFIX", "chat")
	dir := t.TempDir()
	secrets, conf := filepath.Join(dir, "secrets"), filepath.Join(dir, "nats.conf")
	const given = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"
	res := run(fleettest.Context(t, 30*time.Second), "", "auth", "--nkeys", "--secrets", secrets, "--out", conf, "alpha", "beta="+given)
	if res.code != cli.ExitOK {
		t.Fatalf("auth: %v", res)
	}
	confText, _ := os.ReadFile(conf)
	if !strings.Contains(string(confText), given) || strings.Contains(string(confText), "password:") {
		t.Errorf("the configuration lacks the given key or holds a password:\n%s", confText)
	}
	env, _ := readSettings(t, filepath.Join(secrets, "tenant-alpha.env"))
	if env.NATSNKey != filepath.Join(secrets, "tenant-alpha.nk") {
		t.Fatalf("tenant alpha's nkey setting = %q", env.NATSNKey)
	}
	seed, _ := os.ReadFile(env.NATSNKey)
	if strings.Contains(string(confText), strings.TrimSpace(string(seed))) || strings.Contains(res.err, strings.TrimSpace(string(seed))) {
		t.Error("a seed appears outside its seed file")
	}
	s := natstest.RunServerFromConfig(t, conf)
	env.NATSURL = s.ClientURL()
	nc, err := env.Connect("auth test", false)
	if err != nil {
		t.Fatalf("connect with tenant alpha's nkey: %v", err)
	}
	nc.Close()
}

// TestAuthRefusesBadInput: what chatfleet auth cannot turn into a
// configuration is a usage error, and nothing is written.
func TestAuthRefusesBadInput(t *testing.T) {
	t.Setenv("CHATFLEET_PREFIX", "chat")
	ctx := fleettest.Context(t, 10*time.Second)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"alpha"}, "--secrets DIR is required"},
		{[]string{"--secrets", "S", "al.pha"}, "contains '.'"},
		{[]string{"--secrets", "S", "alpha", "alpha"}, "tenant alpha is named twice"},
		{[]string{"--secrets", "S", "alpha=SUAKEY"}, "not a public user nkey"},
		{[]string{"--secrets", "S", "--tools-nkey", "SUAKEY", "alpha"}, "the tool servers: \"SUAKEY\" is not a public user nkey"},
		{[]string{"--secrets", "S", "--tls-cert", "c.pem", "alpha"}, "--tls-cert and --tls-key go together"},
		{[]string{"--secrets", "S", "--tls-ca", "ca.pem", "alpha"}, "--tls-ca needs --tls-cert"},
	} {
		dir := t.TempDir()
		args := append([]string{"auth"}, tt.args...)
		for i, a := range args {
			if a == "S" {
				args[i] = filepath.Join(dir, "secrets")
			}
		}
		res := run(ctx, "", args...)
		if res.code != cli.ExitUsage || !strings.Contains(res.err, tt.want) {
			t.Errorf("auth %v: %v; want exit 2 saying %q", tt.args, res, tt.want)
		}
		if _, err := os.Stat(filepath.Join(dir, "secrets")); err == nil {
			t.Errorf("auth %v wrote secrets", tt.args)
		}
	}
}

// TestAuthTenantsFile: tenants come from a file too, comments and blank
// lines skipped, next to those named on the command line.
func TestAuthTenantsFile(t *testing.T) {
	t.Setenv("CHATFLEET_PREFIX", "chat")
	dir := t.TempDir()
	list := filepath.Join(dir, "tenants")
	if err := os.WriteFile(list, []byte("# our tenants\nalpha\n\n  beta  # the second\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res := run(context.Background(), "", "auth", "--nkeys", "--secrets", filepath.Join(dir, "s"), "--tenants", list, "gamma")
	if res.code != cli.ExitOK {
		t.Fatalf("auth: %v", res)
	}
	for _, account := range []string{`"CHAT_TENANT_alpha" {`, `"CHAT_TENANT_beta" {`, `"CHAT_TENANT_gamma" {`} {
		if !strings.Contains(res.out, account) {
			t.Errorf("the configuration has no account %s", account)
		}
	}
}

// TestAuthAddATenant: adding a tenant is running auth again with the
// whole list and the same secrets, then reloading the server: the new
// tenant connects, and a connection of an existing tenant, made before
// the reload, still submits.
func TestAuthAddATenant(t *testing.T) {
	t.Setenv("CHATFLEET_PREFIX", "chat")
	dir := t.TempDir()
	secrets, conf := filepath.Join(dir, "secrets"), filepath.Join(dir, "nats.conf")
	ctx := fleettest.Context(t, 30*time.Second)
	if res := run(ctx, "", "auth", "--secrets", secrets, "--out", conf, "alpha"); res.code != cli.ExitOK {
		t.Fatalf("auth: %v", res)
	}
	s := natstest.RunServerFromConfig(t, conf)
	connect := func(name string) (*nats.Conn, error) {
		env, _ := readSettings(t, filepath.Join(secrets, name))
		env.NATSURL = s.ClientURL()
		return env.Connect("auth test", false)
	}
	alpha, err := connect("tenant-alpha.env")
	if err != nil {
		t.Fatal(err)
	}
	defer alpha.Close()
	if res := run(ctx, "", "auth", "--secrets", secrets, "--out", conf, "alpha", "beta"); res.code != cli.ExitOK {
		t.Fatalf("auth again: %v", res)
	}
	if _, err := os.Stat(filepath.Join(secrets, "tenant-beta.env")); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	beta, err := connect("tenant-beta.env")
	if err != nil {
		t.Fatalf("the new tenant after the reload: %v", err)
	}
	beta.Close()
	ops, err := connect("operators.env")
	if err != nil {
		t.Fatal(err)
	}
	defer ops.Close()
	js, _ := jetstream.New(ops)
	if _, err := topology.Ensure(ctx, js, topology.Config{}); err != nil {
		t.Fatal(err)
	}
	ajs, _ := jetstream.New(alpha)
	if _, err := ajs.Publish(ctx, "chat.jobs.alpha", []byte(`{}`)); err != nil {
		t.Fatalf("tenant alpha's connection from before the reload: %v", err)
	}
}
