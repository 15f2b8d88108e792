package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/protocol"
)

// upstreamShow runs `upstream limits show --json` and decodes it.
func upstreamShow(t *testing.T, ctx context.Context) map[string]any {
	t.Helper()
	res := run(ctx, "", "upstream", "limits", "show", "--json")
	if res.code != 0 {
		t.Fatalf("upstream limits show: %v", res)
	}
	checkJSONConvention(t, res.out)
	var out map[string]any
	if err := json.Unmarshal([]byte(res.out), &out); err != nil {
		t.Fatalf("upstream limits show --json: %v\n%s", err, res.out)
	}
	return out
}

// TestUpstreamLimitsCommands: set merges the limits given with those set
// before, the workers apply them (a stream held shows in show, and a
// second generation waits for the fleet's one stream), rm falls back to
// the environment's; and the command lines refused.
func TestUpstreamLimitsCommands(t *testing.T) {
	stall, release := fleettest.Stalled()
	defer release()
	f := newFleet(t, nil, stall)
	ctx := fleettest.Context(t, time.Minute)
	t.Setenv("CHATFLEET_FLEET_MAX_LLM_STREAMS", "7")

	if got := upstreamShow(t, ctx); got["in_bucket"] != false || got["limits"].(map[string]any)["max_streams"] != 7.0 {
		t.Fatalf("show before any set: %v", got)
	}
	res := run(ctx, "", "upstream", "limits", "set", "--max-streams", "1", "--requests-per-minute", "100")
	if res.code != 0 || res.out != "upstream default: max_streams 1 · requests_per_minute 100 · tokens_per_minute none\n" {
		t.Fatalf("set: %v", res)
	}
	if res := run(ctx, "", "upstream", "limits", "set", "default", "--tokens-per-minute", "5000"); res.code != 0 ||
		!strings.Contains(res.out, "max_streams 1 · requests_per_minute 100 · tokens_per_minute 5000") {
		t.Fatalf("set again: %v", res)
	}

	first, err := f.Pub.Submit(ctx, withModel(userJob("default", "", "first")))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Stop()
	if err := f.LLM.WaitCalls(ctx, 1); err != nil {
		t.Fatal(err)
	}
	got := upstreamShow(t, ctx)
	if got["in_bucket"] != true || got["streams_held"] != 1.0 || got["minute_requests"] != 1.0 {
		t.Errorf("show while a generation runs: %v", got)
	}
	second, err := f.Pub.Submit(ctx, withModel(userJob("default", "", "second")))
	if err != nil {
		t.Fatal(err)
	}
	defer second.Stop()
	for ev, err := range second.Events(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == protocol.EventProgress && ev.Reason == protocol.ReasonFleetStreams {
			break
		}
	}
	if res := run(ctx, "", "upstream", "limits", "show"); res.code != 0 || !strings.Contains(res.out, "1 streams open") {
		t.Errorf("show: %v", res)
	}
	release()
	if res := run(ctx, "", "upstream", "limits", "rm"); res.code != 0 {
		t.Fatalf("rm: %v", res)
	}
	if got := upstreamShow(t, ctx); got["in_bucket"] != false {
		t.Errorf("show after rm: %v", got)
	}
	for _, args := range [][]string{
		{"upstream", "limits"},
		{"upstream", "limits", "set"},
		{"upstream", "limits", "set", "--max-streams", "-1"},
		{"upstream", "limits", "set", "bad.name", "--max-streams", "1"},
		{"upstream", "limits", "show", "a", "b"},
	} {
		if res := run(ctx, "", args...); res.code != 2 {
			t.Errorf("%v: exit %d, want 2: %v", args, res.code, res)
		}
	}
}

// withModel names the test fleet's model in j.
func withModel(j protocol.Job) protocol.Job {
	j.Model = testModel
	return j
}
