package cli_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
)

// TestConnectErrorsHideCredentials: every command that connects names the
// NATS URL it could not reach, with the password replaced.
func TestConnectErrorsHideCredentials(t *testing.T) {
	const password = "PASSWORD-7f3a91"
	addr := freeAddr(t) // nothing listens there
	useNATS(t, "nats://bob:"+password+"@"+addr)
	ctx := fleettest.Context(t, 30*time.Second)
	for _, args := range [][]string{{"status"}, {"ask", "hi"}, {"cancel", "some-id"}, {"dlq", "ls"}} {
		res := run(ctx, "", args...)
		if res.code != 1 {
			t.Errorf("%v: %v; want exit 1", args, res)
		}
		if strings.Contains(res.out+res.err, password) {
			t.Errorf("%v printed the password: %v", args, res)
		}
		if want := "nats://bob:xxxxx@" + addr; !strings.Contains(res.err, want) {
			t.Errorf("%v: stderr = %q, want it to name %s", args, res.err, want)
		}
	}
}
