package harness

import (
	"os"
	"testing"
)

// TestLargeAnswer streams a 50 MiB answer in 1 KiB deltas, as fast as the
// upstream's socket takes it, through one worker process built without
// the race detector: every event stays under the 64 KiB chunk cap, the
// upstream is called once, the producer gets every byte, and the worker's
// peak RSS grows by at most 3× the answer (the history late joiners read
// is the floor; the answer is larger than the cache takes, so no cached
// copy is made).
func TestLargeAnswer(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 50 MiB through real processes")
	}
	// Bounded by the test binary's -timeout, as TestSmoke is: the run
	// includes a cold build, whose time no fixed budget can guess.
	ctx, cancel := testContext(t)
	defer cancel()
	sz := SmokeSizes()
	sz.LargeAnswerMB, sz.LargeDeltaBytes = 50, 1024
	cfg := Config{WorkDir: t.TempDir(), Sizes: sz, Scenarios: []string{"large"}}
	if testing.Verbose() {
		cfg.Progress = os.Stderr
	}
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range rep.Errors {
		t.Fatalf("scenario failed: %s", e)
	}
	la := rep.LargeAnswer
	if la == nil {
		t.Fatal("no result")
	}
	t.Logf("%+v", *la)
	if la.Received != 50<<20 || la.UpstreamCalls != 1 {
		t.Errorf("received %d bytes from %d upstream calls", la.Received, la.UpstreamCalls)
	}
	if la.MaxEventOutput > 64<<10 || la.MaxEventBytes > 1<<20 {
		t.Errorf("an event carried %d bytes of output (%d encoded)", la.MaxEventOutput, la.MaxEventBytes)
	}
	if la.Note == "" && la.RSSGrowth > 3*la.AnswerBytes {
		t.Errorf("worker RSS grew by %d bytes for a %d-byte answer", la.RSSGrowth, la.AnswerBytes)
	}
}
