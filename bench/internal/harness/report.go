package harness

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything one run measured; it is written as JSON.
type Report struct {
	Started   time.Time         `json:"started"`
	DurationS float64           `json:"duration_s"`
	Machine   Machine           `json:"machine"`
	Command   string            `json:"command"`
	NATS      string            `json:"nats"` // "separate process: chatfleet dev …" or "given: <URL>"
	Sizes     Sizes             `json:"sizes"`
	WorkerEnv map[string]string `json:"worker_env,omitempty"`

	Baselines   *Baselines         `json:"baselines,omitempty"`
	Throughput  []ThroughputResult `json:"throughput,omitempty"`
	Latency     *LatencyResult     `json:"latency,omitempty"`
	Herd        []HerdResult       `json:"herd,omitempty"`
	Cache       *CacheResult       `json:"cache,omitempty"`
	Scaling     []ScalingResult    `json:"scaling,omitempty"`
	GlobalCap   []GlobalCapResult  `json:"global_cap,omitempty"`
	Memory      []MemoryResult     `json:"memory,omitempty"`
	LargeAnswer *LargeAnswerResult `json:"large_answer,omitempty"`
	Gateway     *GatewayResult     `json:"gateway,omitempty"`
	Queues      *QueuesResult      `json:"queues,omitempty"`
	Peer        *PeerResult        `json:"peer,omitempty"`
	Hotpath     *HotpathResult     `json:"hotpath,omitempty"`

	Ratios  []Ratio  `json:"ratios"`
	Targets []Target `json:"targets"`
	Notes   []string `json:"notes,omitempty"`
	Errors  []string `json:"errors,omitempty"` // scenarios that failed
}

// Machine describes where the run happened.
type Machine struct {
	CPUs      int     `json:"cpus"`
	CPUModel  string  `json:"cpu_model"`
	MemGiB    float64 `json:"mem_gib"`
	Kernel    string  `json:"kernel"`
	Go        string  `json:"go"`
	LoadAvg   string  `json:"loadavg_at_start"`
	LoadAvgAt string  `json:"loadavg_at_end"`
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), LoadAvg: loadavg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		for line := range strings.SplitSeq(string(b), "\n") {
			if _, err := fmt.Sscanf(line, "MemTotal: %d kB", &kb); err == nil {
				m.MemGiB = round1(float64(kb) / (1 << 20))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// loadavg is the 1, 5 and 15 minute load averages: other work on the
// machine shows here.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// Ratio is chatfleet's number over a baseline's.
type Ratio struct {
	Name      string  `json:"name"`
	Chatfleet float64 `json:"chatfleet"`
	Baseline  float64 `json:"baseline"`
	Unit      string  `json:"unit"`
	Ratio     float64 `json:"ratio"` // chatfleet / baseline
}

// Target is one of the targets and where the run stands.
type Target struct {
	Name     string `json:"name"`
	Target   string `json:"target"`
	Measured string `json:"measured"`
	Met      *bool  `json:"met,omitempty"` // nil: not measured
	Note     string `json:"note,omitempty"`
}

// writeTable prints the report for humans.
func (rep *Report) writeTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format+"\n", a...) }
	m := rep.Machine
	p("chatfleet benchmarks — %d CPUs (%s), %.0f GiB, %s, %s; load avg %s → %s", m.CPUs, m.CPUModel, m.MemGiB, m.Kernel, m.Go, m.LoadAvg, m.LoadAvgAt)
	p("NATS: %s", rep.NATS)
	p("")
	p("SCENARIO\tVARIANT\tJOBS/S\tTTFC p50/p90/p99 ms\tDONE p50/p90/p99 ms\tERRORS\tNOTES")
	rep.scenarioRows(p)
	rep.gatewayRows(p)
	rep.peerRows(p)
	p("")
	p("RATIO\tCHATFLEET\tBASELINE\tCHATFLEET/BASELINE")
	for _, r := range rep.Ratios {
		p("%s\t%.3f %s\t%.3f %s\t%.3f", r.Name, r.Chatfleet, r.Unit, r.Baseline, r.Unit, r.Ratio)
	}
	p("")
	p("TARGET\tWANT\tMEASURED\tMET")
	for _, t := range rep.Targets {
		met := "not measured"
		if t.Met != nil {
			met = "yes"
			if !*t.Met {
				met = "NO"
			}
		}
		p("%s\t%s\t%s\t%s %s", t.Name, t.Target, t.Measured, met, t.Note)
	}
	for _, n := range rep.Notes {
		p("note: %s", n)
	}
	for _, e := range rep.Errors {
		p("ERROR: %s", e)
	}
	_ = tw.Flush()
}

// scenarioRows prints a row per measurement of chatfleet and of the raw
// NATS baselines; p prints one line of the table.
func (rep *Report) scenarioRows(p func(format string, a ...any)) {
	if b := rep.Baselines; b != nil {
		if j := b.JetStream; j != nil {
			p("baseline JetStream\tasync pub + pull ack\t%.0f msgs/s\t\t\t\tpublish alone %.0f msgs/s, %d B msgs", j.MsgsPerS, j.PublishMsgsPerS, j.MsgBytes)
		}
		if c := b.CorePub; c != nil {
			p("baseline core NATS\tpublish → subscriber\t%.0f msgs/s\t\t\t\t%d B msgs, one publisher, one subscriber", c.MsgsPerS, c.MsgBytes)
		}
		if r := b.ReqReply; r != nil {
			p("baseline core NATS\trequest/reply\t\t%s\t\t\tround trip, one at a time", dist(r.Latency))
		}
	}
	for _, t := range rep.Throughput {
		p("throughput\t%d worker(s), %s\t%.0f\t%s\t%s\t%d\t%.1f events/job; CPU cores: %s; CPU µs/job: %s", t.Workers, t.Variant, t.Load.JobsPerS,
			dist(t.Load.TTFC), dist(t.Load.Done), t.Load.Errors, t.Load.EventsPerJob, coresString(t.CPU), usMap(t.CPUPerJobUS))
	}
	if l := rep.Latency; l != nil {
		p("latency\tupstream itself\t\t%s\t\t\tdirect go-openai calls", dist(l.UpstreamTTFC))
		p("latency\tlow load (1 in flight)\t%.0f\t%s\t%s\t%d\tTTFC above upstream p50 %.2f ms, p99 %.2f ms", l.Low.JobsPerS, dist(l.Low.TTFC), dist(l.Low.Done), l.Low.Errors, l.LowAbove.P50, l.LowAbove.P99)
		if l.LowPrivate.TTFC.N > 0 {
			p("latency\tlow load, dedupe+cache off\t%.0f\t%s\t%s\t%d\tTTFC above upstream p50 %.2f ms, p99 %.2f ms (no KV round trips before the upstream call)", l.LowPrivate.JobsPerS, dist(l.LowPrivate.TTFC), dist(l.LowPrivate.Done), l.LowPrivate.Errors, l.LowPrivateAbove.P50, l.LowPrivateAbove.P99)
		}
		p("latency\tmoderate %.0f jobs/s\t%.0f\t%s\t%s\t%d\tchunk gain p50/p90/p99 %s ms (incl. %s merge window)", l.ModerateRate, l.Moderate.JobsPerS, dist(l.Moderate.TTFC), dist(l.Moderate.Done), l.Moderate.Errors, dist(l.ChunkGain), "5ms")
		p("latency\tpaced tokens %.0f ms, %.0f jobs/s\t%.0f\t%s\t%s\t%d\tchunk gain p50/p90/p99 %s ms", l.PacedDelayMS, l.PacedRate, l.Paced.JobsPerS, dist(l.Paced.TTFC), dist(l.Paced.Done), l.Paced.Errors, dist(l.PacedChunkGain))
	}
	for _, h := range rep.Herd {
		mode := "dedupe on"
		if !h.Dedupe {
			mode = "dedupe off"
		}
		p("herd K=%d\t%s, %d worker(s)\t\t%s\t%s\t%d\tTTFC from the gate's opening; upstream calls %d; lag vs %s p50/p90/p99/max %.2f/%.2f/%.2f/%.2f ms; all accepted in %.2fs; reply-stream consumers ≤ %d %s %s",
			h.K, mode, h.Workers, dist(h.AfterGate), dist(h.Load.Done), h.Load.Errors, h.UpstreamCalls, h.LagRef, h.Lag.P50, h.Lag.P90, h.Lag.P99, h.Lag.Max, h.AcceptS, h.ReplyConsumers, h.ProducerConns, h.Note)
	}
	if c := rep.Cache; c != nil {
		p("cache hits\t1 worker\t%.0f\t%s\t%s\t%d\tupstream calls %d (warm-up only); CPU cores: %s", c.Hits.JobsPerS, dist(c.Hits.TTFC), dist(c.Hits.Done), c.Hits.Errors, c.UpstreamCalls, coresString(c.CPU))
	}
	for _, s := range rep.Scaling {
		p("scaling\t%d worker(s), %.0f ms upstream, %s\t%.0f\t%s\t%s\t%d\tefficiency %.3f (upstream capacity %.0f jobs/s); CPU cores: %s", s.Workers, s.DelayMS, s.Variant, s.Load.JobsPerS, dist(s.Load.TTFC), dist(s.Load.Done), s.Load.Errors, s.Efficiency, s.IdealPerS, coresString(s.CPU))
	}
	for _, g := range rep.GlobalCap {
		p("global cap\t%d worker(s), %s cap %d, %.0f ms upstream\t%.0f\t%s\t%s\t%d\tupstream streams max %d, mean %.1f, at the cap %.0f%% of %d samples",
			g.Workers, g.Variant, g.Cap, g.DelayMS, g.Load.JobsPerS, dist(g.Load.TTFC), dist(g.Load.Done), g.Load.Errors, g.UpstreamMax, g.UpstreamMean, 100*g.AtCap, len(g.Series))
	}
	for _, mr := range rep.Memory {
		p("memory\t%d %s\t\t\t\t%d\tRSS %s → %s: %s per stream %s", mr.N, mr.Kind, mr.Load.Errors, mib(mr.RSSBefore), mib(mr.RSSHolding), kib(mr.BytesPerStream), mr.Note)
	}
	if q := rep.Queues; q != nil {
		for _, c := range q.Cases {
			p("queues\t%s (%d queued first, 1 worker × %d slots, %.0f ms upstream)\t\t\t%s\t%d\tqueue wait of %d jobs: %s",
				c.Name, q.Backlog, q.LLMStreams, q.DelayMS, dist(c.Done), c.Errors, q.Measured, dist(c.Queue))
		}
	}
	if la := rep.LargeAnswer; la != nil {
		p("large answer\t%s in %d B deltas\t\t\t%.0f ms\t0\t%d chunk events, largest %s (%s encoded); worker RSS %s → peak %s: growth %.2f× the answer; worker CPU %.1fs; upstream calls %d %s",
			mib(la.AnswerBytes), la.DeltaBytes, la.Seconds*1000, la.ChunkEvents, kib(int64(la.MaxEventOutput)), kib(int64(la.MaxEventBytes)),
			mib(la.RSSBefore), mib(la.RSSPeak), la.GrowthPerAnswer, la.WorkerCPUS, la.UpstreamCalls, la.Note)
	}
}

// gatewayRows prints the rows of the gateway scenario, when it ran.
func (rep *Report) gatewayRows(p func(format string, a ...any)) {
	g := rep.Gateway
	if g == nil {
		return
	}
	if l := g.LatencyGateway; l.Jobs > 0 {
		p("gateway\tlow load, streamed, 1 in flight\t%.0f\t%s\t%s\t%d\tadded by the gateway p50/p90/p99: TTFC %s ms, done %s ms", l.JobsPerS, dist(l.TTFC), dist(l.Done), l.Errors, dist(g.AddedTTFC), dist(g.AddedDone))
		d := g.LatencyDirect
		p("gateway\tlow load, published directly (taking turns)\t%.0f\t%s\t%s\t%d\t", d.JobsPerS, dist(d.TTFC), dist(d.Done), d.Errors)
	}
	for _, t := range g.Throughput {
		rss := ""
		if t.GatewayRSS > 0 {
			rss = fmt.Sprintf("; gateway RSS %s (peak %s) %s", mib(t.GatewayRSS), mib(t.GatewayPeakRSS), t.Note)
		}
		ttfc := "" // a whole completion has no first chunk
		if t.Load.TTFC.N > 0 {
			ttfc = dist(t.Load.TTFC)
		}
		p("gateway\t%s, %d in flight\t%.0f\t%s\t%s\t%d\tCPU cores: %s; CPU µs/req: %s%s", t.Path, t.Concurrency, t.Load.JobsPerS,
			ttfc, dist(t.Load.Done), t.Load.Errors, coresString(t.CPU), usMap(t.CPUPerJobUS), rss)
	}
}

// peerRows prints the rows of the asynq + Redis peer, when it ran.
func (rep *Report) peerRows(p func(format string, a ...any)) {
	pr := rep.Peer
	if pr == nil {
		return
	}
	if pr.Skipped != "" {
		p("peer asynq+redis\tskipped\t\t\t\t\t%s", pr.Skipped)
	}
	for _, t := range pr.Throughput {
		p("peer asynq+redis\t%d worker(s), poll %s\t%.0f\t%s\t%s\t%d\tCPU cores: %s", t.Workers, t.Poll, t.Load.JobsPerS, dist(t.Load.TTFC), dist(t.Load.Done), t.Load.Errors, coresString(t.CPU))
	}
	for _, l := range pr.Latency {
		p("peer asynq+redis\tlow load, poll %s\t%.0f\t%s\t%s\t%d\tidle CPU cores: %s", l.Poll, l.Low.JobsPerS, dist(l.Low.TTFC), dist(l.Low.Done), l.Low.Errors, coresMap(l.Idle.Cores))
	}
	if pr.ChatfleetIdle != nil {
		p("chatfleet idle\t1 worker\t\t\t\t\tidle CPU cores: %s", coresMap(pr.ChatfleetIdle.Cores))
	}
	for _, e := range pr.Errors {
		p("peer asynq+redis\terror\t\t\t\t\t%s", e)
	}
}

// dist formats a distribution's p50 / p90 / p99.
func dist(d Dist) string { return fmt.Sprintf("%.2f / %.2f / %.2f", d.P50, d.P90, d.P99) }

func coresString(c CPU) string { return coresMap(c.Cores) }

func coresMap(m map[string]float64) string { return groups(m, "%s %.2f") }

func usMap(m map[string]float64) string { return groups(m, "%s %.0f") }

// groups formats values by process group, in a fixed order.
func groups(m map[string]float64, format string) string {
	var parts []string
	for _, k := range []string{"workers", "gateway", "nats", "redis", "peer-workers", "peer-load", "bench", "total"} {
		if v, ok := m[k]; ok {
			parts = append(parts, fmt.Sprintf(format, k, v))
		}
	}
	return strings.Join(parts, ", ")
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
func kib(b int64) string { return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10)) }
