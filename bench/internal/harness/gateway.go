package harness

import (
	"context"
	"fmt"
	"time"

	"github.com/chatfleet/chatfleet/llm/llmtest"
)

// GatewayResult is the gateway scenario: `chatfleet gateway` in front of
// one worker and the instant upstream, against the same kind of jobs
// published directly with the publisher library.
type GatewayResult struct {
	// One request at a time, streamed through the gateway, each followed
	// by a job published directly: both paths see the same machine.
	LatencyGateway LoadResult `json:"latency_gateway"`
	LatencyDirect  LoadResult `json:"latency_direct"`
	// AddedTTFC and AddedDone are the gateway's minus the direct path's,
	// per percentile: P50 is the difference of the medians.
	AddedTTFC  Dist                `json:"added_ttfc"`
	AddedDone  Dist                `json:"added_done"`
	Throughput []GatewayThroughput `json:"throughput"`
}

// Paths of the gateway's throughput runs.
const (
	pathDirect = "direct" // the publisher library, no gateway
	pathStream = "stream" // through the gateway, stream: true
	pathWhole  = "whole"  // through the gateway, stream: false
)

// GatewayThroughput is one closed-loop run of the gateway scenario.
type GatewayThroughput struct {
	Path          string             `json:"path"`        // pathDirect, pathStream or pathWhole
	Concurrency   int                `json:"concurrency"` // HTTP clients, or jobs in flight at the producer
	Load          LoadResult         `json:"load"`
	UpstreamCalls int                `json:"upstream_calls"`
	CPU           CPU                `json:"cpu"`
	CPUPerJobUS   map[string]float64 `json:"cpu_per_job_us"`
	// The gateway process's RSS after the load, and its peak during it
	// (VmHWM, reset after the warm-up); 0 on the direct path.
	GatewayRSS     int64  `json:"gateway_rss_bytes,omitempty"`
	GatewayPeakRSS int64  `json:"gateway_peak_rss_bytes,omitempty"`
	Note           string `json:"note,omitempty"`
}

// gateway: the gateway's added latency one request at a time, then its
// throughput at each concurrency, streamed and whole, each beside the
// same load published directly.
func (r *runner) gateway(ctx context.Context) error {
	sz := r.cfg.Sizes
	res := &GatewayResult{}
	r.rep.Gateway = res
	if err := r.gatewayLatency(ctx, res); err != nil {
		return err
	}
	for _, c := range sz.GatewayConcurrency {
		for _, path := range []string{pathDirect, pathStream, pathWhole} {
			t, err := r.gatewayThroughput(ctx, c, path)
			if err != nil {
				return err
			}
			res.Throughput = append(res.Throughput, t)
			r.progress("   %s, %d in flight: %.0f req/s, TTFC p50 %.2f ms, done p50 %.2f ms, CPU µs/req: %s, errors %d",
				path, c, t.Load.JobsPerS, t.Load.TTFC.P50, t.Load.Done.P50, usMap(t.CPUPerJobUS), t.Load.Errors)
		}
	}
	return nil
}

// gatewayRig is one worker on the instant upstream, with or without a
// gateway process in front of it and a client of that gateway.
type gatewayRig struct {
	up     *llmtest.Server
	f      *fleet
	gw     *gatewayProc   // nil without a gateway
	client *gatewayClient // nil without a gateway
}

// startGatewayRig starts a rig named name whose client keeps up to conns
// connections to the gateway. It is the caller's to close, even after an
// error.
func (r *runner) startGatewayRig(ctx context.Context, name string, withGateway bool, conns int) (*gatewayRig, error) {
	g := &gatewayRig{up: instantUpstream()}
	f, err := r.startFleet(ctx, fleetSpec{name: name, workers: 1, upstream: g.up.URL()})
	if err != nil {
		return g, err // startFleet closed what it started
	}
	g.f = f
	if !withGateway {
		return g, nil
	}
	if g.gw, err = r.startGateway(ctx, g.f); err != nil {
		return g, err
	}
	g.client = newGatewayClient(g.gw.url, g.gw.key, conns)
	return g, nil
}

// close stops the gateway first, so no request of its outlives the fleet.
func (g *gatewayRig) close() {
	if g.client != nil {
		g.client.close()
	}
	if g.gw != nil {
		if err := g.gw.stop(15 * time.Second); err != nil {
			g.f.r.progress("   gateway %s: %v", g.gw.name, err)
		}
	}
	if g.f != nil {
		g.f.close()
	}
	g.up.Close()
}

// cpuGroups are the rig's processes, the gateway among them.
func (g *gatewayRig) cpuGroups() map[string][]int {
	groups := g.f.r.cpuGroups(g.f)
	if g.gw != nil {
		groups["gateway"] = []int{g.gw.pid()}
	}
	return groups
}

// gatewayLatency alternates a streamed request through the gateway and a
// job published directly, one at a time, after a warm-up of each.
func (r *runner) gatewayLatency(ctx context.Context, res *GatewayResult) error {
	sz := r.cfg.Sizes
	rig, err := r.startGatewayRig(ctx, "gateway-latency", true, 1)
	defer rig.close()
	if err != nil {
		return err
	}
	r.alternate(ctx, rig, min(50, sz.GatewayWarmup), "gwlatwarm")
	gw, direct := r.alternate(ctx, rig, sz.GatewayLatencyN, "gwlat")
	res.LatencyGateway, res.LatencyDirect = summarizeLoad(gw, busy(gw)), summarizeLoad(direct, busy(direct))
	res.AddedTTFC = above(res.LatencyGateway.TTFC, res.LatencyDirect.TTFC)
	res.AddedDone = above(res.LatencyGateway.Done, res.LatencyDirect.Done)
	r.progress("   one at a time: TTFC p50 %.2f ms through the gateway, %.2f ms direct: %.2f ms added",
		res.LatencyGateway.TTFC.P50, res.LatencyDirect.TTFC.P50, res.AddedTTFC.P50)
	return nil
}

// alternate sends n streamed requests through the gateway and n jobs
// directly, one at a time, taking turns, with unique prompts.
func (r *runner) alternate(ctx context.Context, g *gatewayRig, n int, kind string) (gw, direct []jobRec) {
	gw, direct = make([]jobRec, n), make([]jobRec, n)
	spec := loadSpec{job: r.uniqueJobs(kind + "direct")}
	for i := range n {
		g.client.ask(ctx, r.prompt(kind+"gateway", i), true, &gw[i])
		runJob(ctx, g.f.pubs[i%len(g.f.pubs)], spec, i, &direct[i])
	}
	return gw, direct
}

// busy is the time recs were in flight, one after another: the wall
// time of a path whose requests took turns with another's.
func busy(recs []jobRec) time.Duration {
	var d time.Duration
	for i := range recs {
		if !recs[i].done.IsZero() {
			d += recs[i].done.Sub(recs[i].submit)
		}
	}
	return d
}

// gatewayThroughput runs GatewayJobs unique jobs on path, closed loop with
// c in flight, on a fresh rig after a warm-up.
func (r *runner) gatewayThroughput(ctx context.Context, c int, path string) (GatewayThroughput, error) {
	sz := r.cfg.Sizes
	rig, err := r.startGatewayRig(ctx, fmt.Sprintf("gateway-%s-c%d", path, c), path != pathDirect, c)
	defer rig.close()
	if err != nil {
		return GatewayThroughput{}, err
	}
	kind := fmt.Sprintf("gw%s%d", path, c)
	load := func(n int, kind string) ([]jobRec, time.Duration) {
		spec := loadSpec{n: n, concurrency: c, job: r.uniqueJobs(kind)}
		if path == pathDirect {
			return runLoad(ctx, rig.f.pubs, spec)
		}
		return drive(ctx, spec, func(ctx context.Context, i int, rec *jobRec) {
			rig.client.ask(ctx, r.prompt(kind, i), path == pathStream, rec)
		})
	}
	load(sz.GatewayWarmup, kind+"warm")
	res := GatewayThroughput{Path: path, Concurrency: c}
	if rig.gw != nil {
		if err := resetPeakRSS(rig.gw.pid()); err != nil {
			res.Note = "peak RSS not reset after the warm-up: " + err.Error()
		}
	}
	calls := rig.up.Calls()
	m := startCPU(rig.cpuGroups())
	recs, wall := load(sz.GatewayJobs, kind)
	res.CPU = m.stop()
	res.Load = summarizeLoad(recs, wall)
	res.UpstreamCalls = rig.up.Calls() - calls
	res.CPUPerJobUS = perJob(res.CPU, res.Load.Jobs)
	if rig.gw != nil {
		res.GatewayRSS, _ = procRSS(rig.gw.pid())
		res.GatewayPeakRSS, _ = procPeakRSS(rig.gw.pid())
	}
	return res, nil
}
