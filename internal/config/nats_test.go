package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestConnectNeedsCertAndKey: a client certificate without its key (or
// the other way round) is refused before any connection is tried, naming
// both variables.
func TestConnectNeedsCertAndKey(t *testing.T) {
	t.Parallel()
	for _, e := range []Env{
		{NATSURL: "nats://127.0.0.1:1", NATSTLSCert: "client.pem"},
		{NATSURL: "nats://127.0.0.1:1", NATSTLSKey: "client-key.pem"},
	} {
		nc, err := e.Connect("test", false)
		if nc != nil {
			nc.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "CHATFLEET_NATS_TLS_CERT and CHATFLEET_NATS_TLS_KEY go together") {
			t.Errorf("cert %q key %q: err = %v, want both variables named", e.NATSTLSCert, e.NATSTLSKey, err)
		}
	}
}

// TestPublisherOptions: the JetStream API prefix reaches the publisher
// only when set.
func TestPublisherOptions(t *testing.T) {
	t.Parallel()
	if n := len((Env{Prefix: "chat"}).Publisher()); n != 1 {
		t.Errorf("without an API prefix: %d options, want the prefix alone", n)
	}
	if n := len((Env{Prefix: "chat", NATSAPI: "JS.chat.API"}).Publisher()); n != 2 {
		t.Errorf("with an API prefix: %d options, want 2", n)
	}
}

// TestSettings: a settings file's variables, comments skipped, become the
// identity of an Env; a missing file sets nothing.
func TestSettings(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tenant-acme.env")
	text := "# a comment=not a variable\nCHATFLEET_PREFIX=chat\nCHATFLEET_NATS_USER=chat-tenant-acme\n" +
		"CHATFLEET_NATS_PASSWORD=pw=with=equals\nCHATFLEET_NATS_JS_API_PREFIX=JS.chat.API\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	vars, err := ReadSettings(path)
	if err != nil {
		t.Fatal(err)
	}
	e := (Env{NATSURL: "nats://kept:4222", NATSToken: "kept"}).WithSettings(vars)
	want := Env{NATSURL: "nats://kept:4222", NATSToken: "kept", Prefix: "chat", NATSUser: "chat-tenant-acme",
		NATSPassword: "pw=with=equals", NATSAPI: "JS.chat.API"}
	if !reflect.DeepEqual(e, want) {
		t.Errorf("WithSettings = %+v, want %+v", e, want)
	}
	if vars, err := ReadSettings(filepath.Join(t.TempDir(), "missing.env")); vars != nil || err != nil {
		t.Errorf("a missing file: %v, %v", vars, err)
	}
}
