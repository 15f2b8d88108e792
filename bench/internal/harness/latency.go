package harness

import (
	"context"
	"fmt"
	"time"
)

// LatencyResult is the latency scenario.
type LatencyResult struct {
	UpstreamTTFC Dist `json:"upstream_ttfc"` // the upstream's own, called directly
	// Low load: one job at a time.
	Low LoadResult `json:"low"`
	// LowAbove is the low-load TTFC minus the upstream's own, per
	// percentile.
	LowAbove Dist `json:"low_ttfc_above_upstream"`
	// LowPrivate: one job at a time with dedupe and cache off, so no KV
	// round trip (cache read, lease) precedes the upstream call.
	LowPrivate      LoadResult `json:"low_dedupe_cache_off"`
	LowPrivateAbove Dist       `json:"low_dedupe_cache_off_ttfc_above_upstream"`
	// Moderate: open loop at ModerateRate jobs/s.
	ModerateRate float64    `json:"moderate_rate"`
	Moderate     LoadResult `json:"moderate"`
	// ChunkGain: per token, from the upstream writing it to the producer
	// receiving it, at moderate load with the instant upstream: includes
	// the chunk window's merging (tokens 2–16 of a burst wait for it).
	ChunkGain Dist `json:"chunk_gain"`
	// Paced: tokens PacedDelay apart (more than the chunk window), so
	// every token is its own chunk event: transport only.
	PacedRate      float64    `json:"paced_rate"`
	PacedDelayMS   float64    `json:"paced_delay_ms"`
	Paced          LoadResult `json:"paced"`
	PacedChunkGain Dist       `json:"paced_chunk_gain"`
	CPU            CPU        `json:"cpu_moderate"`
}

// latency: the stamping upstream, first instant (one job at a time, then
// an open-loop moderate load), then with tokens paced further apart than
// the chunk window.
func (r *runner) latency(ctx context.Context) error {
	sz := r.cfg.Sizes
	up, err := newStampUpstream(0, 0)
	if err != nil {
		return err
	}
	defer up.close()
	res := &LatencyResult{ModerateRate: sz.LatencyRate, PacedRate: sz.LatencyPacedRate, PacedDelayMS: msf(sz.LatencyPacedDelay)}
	r.rep.Latency = res

	direct, err := directTTFC(ctx, up.URL(), sz.UpstreamDirectN)
	if err != nil {
		return fmt.Errorf("direct upstream calls: %w", err)
	}
	res.UpstreamTTFC = summarize(direct)

	// Enough upstream slots for the paced load (each job holds one for
	// 16 × the delay); everything else at its default.
	f, err := r.startFleet(ctx, fleetSpec{name: "latency", workers: 1, upstream: up.URL(),
		env: map[string]string{"CHATFLEET_MAX_CONCURRENT_LLM_STREAMS": "256"}})
	if err != nil {
		return err
	}
	defer f.close()
	runLoad(ctx, f.pubs, loadSpec{n: 50, concurrency: 1, job: r.uniqueJobs("latwarm"), stamps: true})

	recs, wall := runLoad(ctx, f.pubs, loadSpec{n: sz.LatencyLowJobs, concurrency: 1, job: r.uniqueJobs("latlow"), stamps: true})
	res.Low = summarizeLoad(recs, wall)
	res.LowAbove = above(res.Low.TTFC, res.UpstreamTTFC)
	r.progress("   low load: TTFC p50 %.2f ms p99 %.2f ms (upstream itself p50 %.2f p99 %.2f)", res.Low.TTFC.P50, res.Low.TTFC.P99, res.UpstreamTTFC.P50, res.UpstreamTTFC.P99)

	recs, wall = runLoad(ctx, f.pubs, loadSpec{n: sz.LatencyLowJobs, concurrency: 1, job: r.privateJobs("latpriv"), stamps: true})
	res.LowPrivate = summarizeLoad(recs, wall)
	res.LowPrivateAbove = above(res.LowPrivate.TTFC, res.UpstreamTTFC)
	r.progress("   low load, dedupe and cache off: TTFC p50 %.2f ms p99 %.2f ms", res.LowPrivate.TTFC.P50, res.LowPrivate.TTFC.P99)

	n := max(1, int(sz.LatencyRate*sz.LatencyDuration.Seconds()))
	m := startCPU(r.cpuGroups(f))
	recs, wall = runLoad(ctx, f.pubs, loadSpec{n: n, concurrency: 4096, rate: sz.LatencyRate, job: r.uniqueJobs("latmod"), stamps: true})
	res.CPU = m.stop()
	res.Moderate = summarizeLoad(recs, wall)
	res.ChunkGain = summarize(gains(recs))
	r.progress("   moderate %.0f/s: TTFC p50 %.2f ms p99 %.2f ms; chunk gain p50 %.2f p99 %.2f", sz.LatencyRate, res.Moderate.TTFC.P50, res.Moderate.TTFC.P99, res.ChunkGain.P50, res.ChunkGain.P99)

	up.setDelays(sz.LatencyPacedDelay, sz.LatencyPacedDelay)
	recs, wall = runLoad(ctx, f.pubs, loadSpec{n: sz.LatencyPacedJobs, concurrency: 4096, rate: sz.LatencyPacedRate, job: r.uniqueJobs("latpaced"), stamps: true})
	res.Paced = summarizeLoad(recs, wall)
	res.PacedChunkGain = summarize(gains(recs))
	r.progress("   paced: chunk gain p50 %.2f p99 %.2f ms", res.PacedChunkGain.P50, res.PacedChunkGain.P99)
	return nil
}

// above is d minus base (the upstream's own, say), per percentile.
func above(d, upstream Dist) Dist {
	return Dist{N: d.N, P50: round3(d.P50 - upstream.P50), P90: round3(d.P90 - upstream.P90), P99: round3(d.P99 - upstream.P99)}
}

func gains(recs []jobRec) []time.Duration {
	var out []time.Duration
	for i := range recs {
		out = append(out, recs[i].gains...)
	}
	return out
}
