package tools_test

import (
	"context"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/tools/devtools"

	"github.com/chatfleet/chatfleet/tools"
)

// TestLookupAfterACancelledLookup: a job whose context ends while the
// client asks the tool servers (a cancelled job) finds no tools — but
// the next job, asking at once, must find them: the cut-short discovery
// is not what the fleet offers. A worker's jobs share one client, so one
// cancelled job failed the others with an unknown tool.
func TestLookupAfterACancelledLookup(t *testing.T) {
	t.Parallel()
	client, _ := serve(t, tools.Config{}, devtools.Calculator())
	ctx := fleettest.Context(t, 10*time.Second)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	client.Lookup(cancelled, "calculator")
	if _, ok := client.Lookup(ctx, "calculator")["calculator"]; !ok {
		t.Fatal("a job asking right after a cancelled one finds no calculator: the cancelled job's empty discovery was kept")
	}
}
