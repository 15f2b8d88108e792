package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// chartSpec is one chart for bench/charts (a module of its own, so
// chatfleet's module does not depend on gonum/plot): bars by group, or
// lines over X.
type chartSpec struct {
	File   string        `json:"file"`
	Title  string        `json:"title"`
	Kind   string        `json:"kind"` // "bars" or "lines"
	XLabel string        `json:"x_label,omitempty"`
	YLabel string        `json:"y_label"`
	LogY   bool          `json:"log_y,omitempty"`
	Groups []string      `json:"groups,omitempty"` // bars: the categories along X
	Series []chartSeries `json:"series"`
}

type chartSeries struct {
	Name   string    `json:"name"`
	X      []float64 `json:"x,omitempty"` // lines
	Y      []float64 `json:"y"`
	Dashed bool      `json:"dashed,omitempty"`
}

// chartSpecs turns the report into charts: latency percentiles, scaling
// and throughput.
func (rep *Report) chartSpecs() []chartSpec {
	var out []chartSpec
	if lat := rep.latencyChart(); len(lat.Series) > 0 {
		out = append(out, lat)
	}
	if len(rep.Scaling) > 0 {
		out = append(out, rep.scalingChart())
	}
	if tp := rep.throughputChart(); len(tp.Series) > 0 {
		out = append(out, tp)
	}
	return out
}

// latencyChart compares the time to first chunk at its percentiles: the
// upstream's own, core NATS, chatfleet's and the peer's.
func (rep *Report) latencyChart() chartSpec {
	pct := func(d Dist) []float64 { return []float64{d.P50, d.P90, d.P99} }
	lat := chartSpec{File: "latency.png", Title: "Time to first chunk at the producer (instant upstream)", Kind: "bars",
		YLabel: "ms (log scale)", LogY: true, Groups: []string{"p50", "p90", "p99"}}
	if l := rep.Latency; l != nil {
		lat.Series = append(lat.Series, chartSeries{Name: "upstream itself (direct)", Y: pct(l.UpstreamTTFC)})
	}
	if b := rep.Baselines; b != nil && b.ReqReply != nil {
		lat.Series = append(lat.Series, chartSeries{Name: "core NATS request/reply", Y: pct(b.ReqReply.Latency)})
	}
	if l := rep.Latency; l != nil {
		lat.Series = append(lat.Series,
			chartSeries{Name: "chatfleet, 1 in flight", Y: pct(l.Low.TTFC)},
			chartSeries{Name: "chatfleet, 1 in flight, dedupe+cache off", Y: pct(l.LowPrivate.TTFC)},
			chartSeries{Name: fmt.Sprintf("chatfleet, %.0f jobs/s", l.ModerateRate), Y: pct(l.Moderate.TTFC)})
	}
	if p := rep.Peer; p != nil {
		for _, pl := range p.Latency {
			lat.Series = append(lat.Series, chartSeries{Name: "asynq+Redis, poll " + pl.Poll, Y: pct(pl.Low.TTFC)})
		}
	}
	return lat
}

// scalingChart draws jobs/s over workers, a line per variant, beside
// linear scaling from 1 worker and the upstream's capacity; rep.Scaling
// must not be empty.
func (rep *Report) scalingChart() chartSpec {
	sc := chartSpec{File: "scaling.png", Kind: "lines", XLabel: "worker processes", YLabel: "jobs/s",
		Title: fmt.Sprintf("Scaling: upstream %.0f ms per answer, %d upstream slots per worker", rep.Scaling[0].DelayMS, rep.Scaling[0].LLMStreams)}
	var x, ideal, linear []float64
	measured := map[string]*chartSeries{}
	var order []string
	for _, s := range rep.Scaling {
		ms := measured[s.Variant]
		if ms == nil {
			ms = &chartSeries{Name: "chatfleet, " + s.Variant}
			measured[s.Variant] = ms
			order = append(order, s.Variant)
		}
		ms.X = append(ms.X, float64(s.Workers))
		ms.Y = append(ms.Y, s.Load.JobsPerS)
		if s.Variant == rep.Scaling[0].Variant {
			x = append(x, float64(s.Workers))
			ideal = append(ideal, s.IdealPerS)
			linear = append(linear, float64(s.Workers)*rep.Scaling[0].Load.JobsPerS/float64(rep.Scaling[0].Workers))
		}
	}
	for _, v := range order {
		sc.Series = append(sc.Series, *measured[v])
	}
	sc.Series = append(sc.Series,
		chartSeries{Name: "linear from 1 worker", X: x, Y: linear, Dashed: true},
		chartSeries{Name: "upstream capacity", X: x, Y: ideal, Dashed: true})
	return sc
}

// throughputChart compares unique jobs/s: chatfleet's runs, its cache
// hits and the peer's.
func (rep *Report) throughputChart() chartSpec {
	tp := chartSpec{File: "throughput.png", Title: "Unique jobs/s, 16-chunk answers, instant upstream", Kind: "bars", YLabel: "jobs/s", Groups: []string{""}}
	for _, t := range rep.Throughput {
		tp.Series = append(tp.Series, chartSeries{Name: fmt.Sprintf("chatfleet %dw %s", t.Workers, t.Variant), Y: []float64{t.Load.JobsPerS}})
	}
	if c := rep.Cache; c != nil {
		tp.Series = append(tp.Series, chartSeries{Name: "chatfleet cache hits", Y: []float64{c.Hits.JobsPerS}})
	}
	if p := rep.Peer; p != nil {
		for _, t := range p.Throughput {
			tp.Series = append(tp.Series, chartSeries{Name: fmt.Sprintf("asynq+Redis %dw", t.Workers), Y: []float64{t.Load.JobsPerS}})
		}
	}
	return tp
}

// charts writes the chart specs and runs bench/charts on them.
func (r *runner) charts(ctx context.Context) error {
	specs := r.rep.chartSpecs()
	if len(specs) == 0 {
		return nil
	}
	specPath := filepath.Join(r.cfg.WorkDir, "charts.json")
	if err := writeJSON(specPath, specs); err != nil {
		return err
	}
	out, err := filepath.Abs(r.cfg.ChartsDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, r.chartsBin, "-spec", specPath, "-out", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("charts: %w\n%s", err, b)
	}
	r.progress("charts in %s", out)
	return nil
}
