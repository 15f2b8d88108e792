package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testContext ends a minute before the test binary's -timeout would kill
// it, leaving time to stop child processes and report what failed; with
// no -timeout it does not end.
func testContext(t *testing.T) (context.Context, context.CancelFunc) {
	deadline, ok := t.Deadline()
	if !ok {
		return context.WithCancel(context.Background())
	}
	return context.WithDeadline(context.Background(), deadline.Add(-time.Minute))
}

// TestSmoke runs every scenario at tiny sizes with real processes (NATS,
// one worker), so the benchmark cannot rot. It checks the report is
// complete and well-formed, and what must hold at any speed: no job
// failed, a herd made exactly one upstream call, cache hits came from the
// cache, the gateway's clients got the whole answer. It asserts nothing
// about speed. The asynq peer runs too when redis-server is installed; the
// charts when CHATFLEET_BENCH_CHARTS is set, as `make test` does. Skipped
// under -short.
//
// The binaries are built first, then the scenarios run: a cold build of
// chatfleet takes over a minute on an idle 2-core machine and several on
// a busy one, and it once used up a 4-minute budget meant for the run.
// Both are bounded by the test binary's -timeout only (less a minute to
// stop the processes and report), not by a guess of this machine's speed.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("the benchmark's smoke run builds and starts processes: skipped under -short")
	}
	ctx, cancel := testContext(t)
	defer cancel()
	dir := t.TempDir()
	var table bytes.Buffer
	cfg := Config{
		WorkDir: dir,
		Sizes:   SmokeSizes(),
		Out:     filepath.Join(dir, "out", "results.json"),
		Table:   &table,
	}
	if testing.Verbose() {
		cfg.Progress = os.Stderr
	}
	_, err := exec.LookPath("redis-server")
	cfg.Peer = err == nil
	if os.Getenv("CHATFLEET_BENCH_CHARTS") != "" {
		cfg.ChartsDir = filepath.Join(dir, "charts")
	}
	r, cleanup, err := prepare(ctx, cfg)
	defer cleanup()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range rep.Errors {
		t.Errorf("scenario failed: %s", e)
	}

	// The JSON report decodes to what Run returned.
	b, err := os.ReadFile(cfg.Out)
	if err != nil {
		t.Fatal(err)
	}
	var got Report
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("report is not valid JSON: %v", err)
	}
	if got.Machine.CPUs == 0 || got.NATS == "" || len(got.Targets) != 5 {
		t.Errorf("report lacks the machine, the NATS server or the targets: %+v", got.Machine)
	}
	if table.Len() == 0 {
		t.Error("no table printed")
	}
	sz := cfg.Sizes

	// Each ratio is chatfleet's number over its baseline's; the baselines
	// on the same server (and the peer's, when it ran) are all there.
	wantRatios := 3
	if cfg.Peer {
		wantRatios += len(sz.PeerWorkers) + 2*2
	}
	if len(got.Ratios) != wantRatios {
		t.Errorf("%d ratios, want %d: %+v", len(got.Ratios), wantRatios, got.Ratios)
	}
	for _, r := range got.Ratios {
		if r.Chatfleet <= 0 || r.Baseline <= 0 || math.Abs(r.Ratio-r.Chatfleet/r.Baseline) > 0.001*r.Ratio+0.001 {
			t.Errorf("ratio %q: %v / %v = %v", r.Name, r.Chatfleet, r.Baseline, r.Ratio)
		}
	}

	noErrors := func(what string, l LoadResult, jobs int) {
		t.Helper()
		if l.Jobs != jobs || l.Errors != 0 || l.Done.N != jobs {
			t.Errorf("%s: %d jobs, %d errors (first: %s), %d done; want %d done without errors", what, l.Jobs, l.Errors, l.FirstError, l.Done.N, jobs)
		}
	}

	if b := got.Baselines; b == nil || b.JetStream == nil || b.JetStream.MsgsPerS <= 0 || b.CorePub == nil || b.CorePub.MsgsPerS <= 0 || b.ReqReply == nil || b.ReqReply.Latency.N != sz.ReqReplyN {
		t.Errorf("baselines incomplete: %+v", b)
	}

	if len(got.Throughput) != len(sz.ThroughputWorkers) {
		t.Errorf("%d throughput runs, want %d", len(got.Throughput), len(sz.ThroughputWorkers))
	}
	for _, tp := range got.Throughput {
		noErrors("throughput", tp.Load, sz.ThroughputJobs)
		if tp.Load.ChunksPerJob < 1 || tp.UpstreamCalls != sz.ThroughputJobs || tp.Load.JobsPerS <= 0 {
			t.Errorf("throughput: %.1f chunks/job, %d upstream calls, %.1f jobs/s", tp.Load.ChunksPerJob, tp.UpstreamCalls, tp.Load.JobsPerS)
		}
	}

	if l := got.Latency; l == nil {
		t.Error("no latency result")
	} else {
		noErrors("latency low", l.Low, sz.LatencyLowJobs)
		noErrors("latency low, dedupe and cache off", l.LowPrivate, sz.LatencyLowJobs)
		if l.LowPrivate.Roles["leader"] != sz.LatencyLowJobs {
			t.Errorf("latency low, dedupe and cache off: roles %v, want every job its own leader", l.LowPrivate.Roles)
		}
		noErrors("latency paced", l.Paced, sz.LatencyPacedJobs)
		if l.Moderate.Errors != 0 || l.Moderate.Jobs == 0 {
			t.Errorf("latency moderate: %d jobs, %d errors", l.Moderate.Jobs, l.Moderate.Errors)
		}
		if l.UpstreamTTFC.N != sz.UpstreamDirectN {
			t.Errorf("upstream's own TTFC from %d calls, want %d", l.UpstreamTTFC.N, sz.UpstreamDirectN)
		}
		// Every token's stamp came through: 16 per job.
		if want := 16 * sz.LatencyPacedJobs; l.PacedChunkGain.N != want {
			t.Errorf("paced chunk gains: %d, want %d", l.PacedChunkGain.N, want)
		}
		if l.ChunkGain.N != 16*l.Moderate.Jobs || l.ChunkGain.Min < 0 {
			t.Errorf("chunk gains: %d (min %.3f ms), want %d, none negative", l.ChunkGain.N, l.ChunkGain.Min, 16*l.Moderate.Jobs)
		}
	}

	if len(got.Herd) != 2*len(sz.HerdKs) {
		t.Errorf("%d herds, want %d", len(got.Herd), 2*len(sz.HerdKs))
	}
	for _, h := range got.Herd {
		noErrors("herd", h.Load, h.K)
		want := 1
		if !h.Dedupe {
			want = h.K
		}
		if h.UpstreamCalls != want {
			t.Errorf("herd K=%d dedupe=%v: %d upstream calls, want %d", h.K, h.Dedupe, h.UpstreamCalls, want)
		}
		if h.Dedupe && (h.Load.Roles["leader"] != 1 || h.Lag.N != h.K-1) {
			t.Errorf("herd K=%d: roles %v, %d follower lags; want 1 leader and %d lags", h.K, h.Load.Roles, h.Lag.N, h.K-1)
		}
	}

	if c := got.Cache; c == nil {
		t.Error("no cache result")
	} else {
		noErrors("cache warm", c.Warm, sz.CacheJobs)
		noErrors("cache hits", c.Hits, sz.CacheJobs)
		if c.Hits.Roles["cache"] != sz.CacheJobs || c.UpstreamCalls != sz.CacheJobs {
			t.Errorf("cache hits: roles %v, %d upstream calls; want %d cache roles and calls only while warming", c.Hits.Roles, c.UpstreamCalls, sz.CacheJobs)
		}
	}

	if want := len(sz.ScalingWorkers) * (1 + len(sz.ScalingWindows)); len(got.Scaling) != want {
		t.Errorf("%d scaling steps, want %d", len(got.Scaling), want)
	}
	for _, s := range got.Scaling {
		noErrors("scaling", s.Load, s.Workers*sz.ScalingJobsPerWorker)
		if s.Efficiency <= 0 {
			t.Errorf("scaling %d workers: efficiency %v", s.Workers, s.Efficiency)
		}
	}

	if len(got.GlobalCap) != 1+len(sz.GlobalCapWorkers) {
		t.Errorf("%d global-cap steps, want %d", len(got.GlobalCap), 1+len(sz.GlobalCapWorkers))
	}
	for _, g := range got.GlobalCap {
		noErrors("global cap", g.Load, sz.GlobalCapJobs)
		if g.UpstreamMax > sz.GlobalCap || len(g.Series) == 0 {
			t.Errorf("global cap, %d workers: the upstream saw %d streams at once, over the cap %d (%d samples)", g.Workers, g.UpstreamMax, sz.GlobalCap, len(g.Series))
		}
	}

	if len(got.Memory) != 2*len(sz.MemoryNs) {
		t.Errorf("%d memory results, want %d", len(got.Memory), 2*len(sz.MemoryNs))
	}
	for _, m := range got.Memory {
		noErrors("memory "+m.Kind, m.Load, m.N)
		if m.Held != m.N || m.RSSBefore <= 0 || m.RSSHolding <= 0 {
			t.Errorf("memory %s: held %d of %d, RSS %d → %d", m.Kind, m.Held, m.N, m.RSSBefore, m.RSSHolding)
		}
	}

	if g := got.Gateway; g == nil {
		t.Error("no gateway result")
	} else {
		noErrors("gateway latency", g.LatencyGateway, sz.GatewayLatencyN)
		noErrors("gateway latency, direct", g.LatencyDirect, sz.GatewayLatencyN)
		if g.LatencyGateway.TTFC.N != sz.GatewayLatencyN || g.AddedTTFC.N != sz.GatewayLatencyN {
			t.Errorf("gateway latency: %d first chunks, %d differences; want %d", g.LatencyGateway.TTFC.N, g.AddedTTFC.N, sz.GatewayLatencyN)
		}
		if want := 3 * len(sz.GatewayConcurrency); len(g.Throughput) != want {
			t.Errorf("%d gateway throughput runs, want %d", len(g.Throughput), want)
		}
		for _, gt := range g.Throughput {
			noErrors("gateway "+gt.Path, gt.Load, sz.GatewayJobs)
			_, measured := gt.CPU.CPUS["gateway"]
			if gt.UpstreamCalls != sz.GatewayJobs || (gt.Path == pathWhole) == (gt.Load.ChunksPerJob >= 1) ||
				(gt.Path != pathDirect) != (measured && gt.GatewayRSS > 0 && gt.GatewayPeakRSS > 0) {
				t.Errorf("gateway %s: %d upstream calls, %.1f chunks/job, gateway CPU measured %v, RSS %d (peak %d)",
					gt.Path, gt.UpstreamCalls, gt.Load.ChunksPerJob, measured, gt.GatewayRSS, gt.GatewayPeakRSS)
			}
		}
	}

	if p := got.Peer; p == nil {
		t.Error("no peer result")
	} else if cfg.Peer {
		if len(p.Errors) > 0 || len(p.Throughput) != len(sz.PeerWorkers) || len(p.Latency) != 2 || p.ChatfleetIdle == nil {
			t.Errorf("peer incomplete: errors %v, %d throughput runs, %d latency runs", p.Errors, len(p.Throughput), len(p.Latency))
		}
		for _, pt := range p.Throughput {
			noErrors("peer throughput", pt.Load, sz.PeerJobs)
		}
	} else if p.Skipped == "" {
		t.Error("peer neither run nor skipped")
	}

	if cfg.ChartsDir != "" {
		for _, f := range []string{"latency.png", "scaling.png", "throughput.png"} {
			if st, err := os.Stat(filepath.Join(cfg.ChartsDir, f)); err != nil || st.Size() == 0 {
				t.Errorf("chart %s missing or empty: %v", f, err)
			}
		}
	}
	if !slices.Equal(got.Sizes.HerdKs, sz.HerdKs) {
		t.Errorf("report sizes %v, want %v", got.Sizes.HerdKs, sz.HerdKs)
	}
}
