package harness

import (
	"fmt"
	"strings"
)

// The targets, on a 2-core machine with everything on it.
const (
	targetJobsPerS          = 3500
	targetTTFCAboveP50MS    = 1.0
	targetTTFCAboveP99MS    = 5.0
	targetBytesPerFollower  = 64 << 10
	targetScalingEfficiency = 0.9
)

// throughputFor returns the default-variant throughput run with w workers.
func (rep *Report) throughputFor(w int) *ThroughputResult {
	for i := range rep.Throughput {
		if t := &rep.Throughput[i]; t.Workers == w && t.Variant == "default" {
			return t
		}
	}
	return nil
}

// ratios are chatfleet's numbers over the baselines' and the peer's.
func (rep *Report) ratios() []Ratio {
	var out []Ratio
	add := func(name string, cf, base float64, unit string) {
		if cf == 0 || base == 0 {
			return
		}
		out = append(out, Ratio{Name: name, Chatfleet: cf, Baseline: base, Unit: unit, Ratio: ratio(cf, base)})
	}
	t1 := rep.throughputFor(1)
	if b := rep.Baselines; b != nil {
		if b.JetStream != nil && t1 != nil {
			add("jobs/s (1 worker) vs raw JetStream msgs/s", t1.Load.JobsPerS, b.JetStream.MsgsPerS, "/s")
		}
		if b.ReqReply != nil && rep.Latency != nil {
			add("TTFC p50 (low load) vs core request/reply p50", rep.Latency.Low.TTFC.P50, b.ReqReply.Latency.P50, "ms")
			add("TTFC p99 (low load) vs core request/reply p99", rep.Latency.Low.TTFC.P99, b.ReqReply.Latency.P99, "ms")
		}
	}
	if p := rep.Peer; p != nil {
		for _, pt := range p.Throughput {
			if t := rep.throughputFor(pt.Workers); t != nil {
				add(fmt.Sprintf("jobs/s (%d worker(s)) vs asynq+Redis", pt.Workers), t.Load.JobsPerS, pt.Load.JobsPerS, "/s")
			}
		}
		if rep.Latency != nil {
			for _, pl := range p.Latency {
				add("TTFC p50 (low load) vs asynq poll "+pl.Poll, rep.Latency.Low.TTFC.P50, pl.Low.TTFC.P50, "ms")
				add("TTFC p99 (low load) vs asynq poll "+pl.Poll, rep.Latency.Low.TTFC.P99, pl.Low.TTFC.P99, "ms")
			}
		}
	}
	return out
}

func met(ok bool) *bool { return &ok }

// targets says where the run stands against each of the targets.
func (rep *Report) targets() []Target {
	return []Target{rep.throughputTarget(), rep.ttfcTarget(), rep.herdTarget(), rep.memoryTarget(), rep.scalingTarget()}
}

// throughputTarget judges the best default throughput run.
func (rep *Report) throughputTarget() Target {
	tp := Target{Name: "unique jobs/s", Target: fmt.Sprintf("≥ %d", targetJobsPerS)}
	var best *ThroughputResult
	for i := range rep.Throughput {
		t := &rep.Throughput[i]
		if t.Variant == "default" && (best == nil || t.Load.JobsPerS > best.Load.JobsPerS) {
			best = t
		}
	}
	if best != nil {
		tp.Measured = fmt.Sprintf("%.0f (%d worker(s))", best.Load.JobsPerS, best.Workers)
		tp.Met = met(best.Load.JobsPerS >= targetJobsPerS && best.Load.Errors == 0)
		if !*tp.Met {
			tp.Note = fmt.Sprintf("%.0f%% of target", 100*best.Load.JobsPerS/targetJobsPerS)
		}
	}
	return tp
}

// ttfcTarget judges the time to first chunk above the upstream's at low
// load.
func (rep *Report) ttfcTarget() Target {
	ttfc := Target{Name: "TTFC above upstream, low load", Target: fmt.Sprintf("p50 ≤ %.0f ms, p99 ≤ %.0f ms", targetTTFCAboveP50MS, targetTTFCAboveP99MS)}
	if l := rep.Latency; l != nil && l.Low.TTFC.N > 0 {
		ttfc.Measured = fmt.Sprintf("p50 %.2f ms, p99 %.2f ms", l.LowAbove.P50, l.LowAbove.P99)
		ttfc.Met = met(l.LowAbove.P50 <= targetTTFCAboveP50MS && l.LowAbove.P99 <= targetTTFCAboveP99MS)
	}
	return ttfc
}

// herdTarget judges the upstream calls of every herd with dedupe on.
func (rep *Report) herdTarget() Target {
	herd := Target{Name: "upstream calls per herd (dedupe on)", Target: "exactly 1 at every K"}
	var parts []string
	ok, any := true, false
	for _, h := range rep.Herd {
		if !h.Dedupe || h.Load.Jobs == 0 {
			continue
		}
		any = true
		parts = append(parts, fmt.Sprintf("K=%d: %d", h.K, h.UpstreamCalls))
		ok = ok && h.UpstreamCalls == 1 && h.Load.Errors == 0
	}
	if any {
		herd.Measured = strings.Join(parts, ", ")
		herd.Met = met(ok)
	}
	return herd
}

// memoryTarget judges the memory per follower stream at every N.
func (rep *Report) memoryTarget() Target {
	mem := Target{Name: "memory per follower stream", Target: "≤ 64 KiB"}
	var parts []string
	ok, any := true, false
	for _, m := range rep.Memory {
		if m.Kind != "followers" {
			continue
		}
		any = true
		parts = append(parts, fmt.Sprintf("N=%d: %s", m.N, kib(m.BytesPerStream)))
		ok = ok && m.BytesPerStream <= targetBytesPerFollower && m.Held == m.N
	}
	if any {
		mem.Measured = strings.Join(parts, ", ")
		mem.Met = met(ok)
	}
	return mem
}

// scalingTarget judges the default scaling step with 4 workers.
func (rep *Report) scalingTarget() Target {
	sc := Target{Name: "scaling efficiency at 4 workers", Target: fmt.Sprintf("≥ %.1f", targetScalingEfficiency)}
	for _, s := range rep.Scaling {
		if s.Workers == 4 && s.Variant == "default" {
			sc.Measured = fmt.Sprintf("%.3f (%.0f of ideal %.0f jobs/s)", s.Efficiency, s.Load.JobsPerS, s.IdealPerS)
			sc.Met = met(s.Efficiency >= targetScalingEfficiency)
		}
	}
	return sc
}
