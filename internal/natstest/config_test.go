package natstest_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/chatfleet/chatfleet/internal/natstest"
)

// TestRunServerFromConfig: a server started from a configuration file
// applies its users (a connection without credentials is refused) and
// runs JetStream in a temporary directory, not the one the file names.
func TestRunServerFromConfig(t *testing.T) {
	t.Parallel()
	notHere := filepath.Join(t.TempDir(), "not-here")
	conf := filepath.Join(t.TempDir(), "server.conf")
	text := "listen: \"0.0.0.0:4222\"\njetstream { store_dir: \"" + notHere + "\" }\n" +
		"authorization { users: [ { user: alice, password: s3cret } ] }\n"
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	s := natstest.RunServerFromConfig(t, conf)

	if nc, err := nats.Connect(s.ClientURL()); !errors.Is(err, nats.ErrAuthorization) {
		if nc != nil {
			nc.Close()
		}
		t.Fatalf("connect without credentials: %v, want an authorization violation", err)
	}
	_, js := natstest.JetStream(t, s.ClientURL(), nats.UserInfo("alice", "s3cret"))
	if _, err := js.AccountInfo(t.Context()); err != nil {
		t.Fatalf("JetStream for alice: %v", err)
	}
	if _, err := os.Stat(notHere); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the file's store_dir was used: %v", err)
	}
}
