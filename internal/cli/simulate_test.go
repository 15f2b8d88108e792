package cli_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/cli"
	"github.com/chatfleet/chatfleet/internal/fleettest"
)

// TestSimulate: simulate serves the simulated model on
// CHATFLEET_DEV_MODEL_LISTEN until it is stopped, and names the variable
// when the address is taken.
func TestSimulate(t *testing.T) {
	addr := freeAddr(t)
	t.Setenv("CHATFLEET_DEV_MODEL_LISTEN", addr)
	ctx := fleettest.Context(t, 30*time.Second)
	simCtx, stop := context.WithCancel(ctx)
	sim := start(simCtx, "simulate")
	sim.waitErr(t, ctx, "SIMULATED MODEL")

	resp, err := http.Get("http://" + addr + "/v1/models")
	if err != nil {
		stop()
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v1/models = %d", resp.StatusCode)
	}

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		stop()
		t.Fatal(err)
	}
	defer taken.Close()
	t.Setenv("CHATFLEET_DEV_MODEL_LISTEN", taken.Addr().String())
	if r := run(ctx, "", "simulate"); r.code != cli.ExitFailed || !strings.Contains(r.err, "CHATFLEET_DEV_MODEL_LISTEN") {
		t.Errorf("simulate on a taken address: %s", r)
	}

	stop()
	if r := sim.wait(t, 10*time.Second); r.code != cli.ExitOK {
		t.Errorf("simulate after a stop: %s", r)
	}
}
