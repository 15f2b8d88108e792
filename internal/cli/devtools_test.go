package cli_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/subjects"
	"github.com/chatfleet/chatfleet/tools"
)

// TestDevTools: dev serves the example tools on its NATS under the
// fleet's prefix, where any client discovers and calls them, and its
// banner says how to try them; `ask --tools calculator` gets the tool's
// result in the answer and the call on stderr, through the leader's tool
// loop; dev stops them cleanly.
func TestDevTools(t *testing.T) {
	endToEnd(t)
	natsAddr, _ := devEnv(t)
	ctx := fleettest.Context(t, 60*time.Second)
	dev, stop := startDev(t, ctx)
	log := dev.err.String()
	for _, want := range []string{
		"Fleet tools served here: calculator, clock.",
		"CHATFLEET_NATS_URL=nats://" + natsAddr + ` go run ./cmd/chatfleet ask --tools calculator "what is 17*23?"`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("dev's banner lacks %q:\n%s", want, log)
		}
	}

	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	names, _ := subjects.New("chat")
	client := tools.NewClient(nc, names)
	known := client.Tools(ctx)
	if known["calculator"].Description == "" || known["clock"].Description == "" || len(known) != 2 {
		t.Errorf("tools discovered on dev's NATS: %+v, want calculator and clock", known)
	}
	rep, err := client.Call(ctx, "calculator", tools.Request{ID: "t1", Tenant: "default", Arguments: `{"expression":"17*23"}`}, nil)
	nc.Close()
	if err != nil || rep.Output != "391" {
		t.Errorf("calculator(17*23) = %+v, %v; want 391", rep, err)
	}

	res := run(ctx, "", "ask", "--tools", "calculator", "what is 17*23?")
	if res.code != 0 || !strings.HasPrefix(res.out, "The calculator says 391.") ||
		!strings.Contains(res.err, `[calculator {"expression":"17*23"} → 391]`) {
		t.Errorf("ask --tools calculator: %v\nwant the tool's result in the answer and its call on stderr", res)
	}

	if dres := stop(); dres.code != 0 {
		t.Errorf("dev exit %d, want 0:\n%s", dres.code, dres.err)
	}
}
