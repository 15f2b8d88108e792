package config

import (
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
