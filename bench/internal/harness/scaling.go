package harness

import (
	"context"
	"fmt"
	"strconv"
)

// ScalingResult is one step of the scaling scenario.
type ScalingResult struct {
	Workers     int                `json:"workers"`
	Variant     string             `json:"variant"` // "default" or "chunk-window-<d>"
	LLMStreams  int                `json:"llm_streams_per_worker"`
	DelayMS     float64            `json:"upstream_ms_per_answer"`
	Concurrency int                `json:"concurrency"`
	Load        LoadResult         `json:"load"`
	IdealPerS   float64            `json:"ideal_jobs_per_s"` // workers × streams / delay
	Efficiency  float64            `json:"efficiency"`       // jobs/s ÷ (workers × jobs/s with 1 worker)
	PerWorker   map[string]int     `json:"jobs_per_worker"`
	CPU         CPU                `json:"cpu"`
	CPUPerJobUS map[string]float64 `json:"cpu_per_job_us"`
}

// scaling: an upstream taking ScalingDelay per answer, 1, 2, 4 … workers
// each with ScalingLLMStreams upstream slots, closed loop with twice the
// fleet's upstream slots in flight.
func (r *runner) scaling(ctx context.Context) error {
	if err := r.scalingRun(ctx, ""); err != nil {
		return err
	}
	for _, win := range r.cfg.Sizes.ScalingWindows {
		if err := r.scalingRun(ctx, win.String()); err != nil {
			return err
		}
	}
	return nil
}

// scalingRun runs every scaling step with the chunk window set to window
// ("": the worker's default).
func (r *runner) scalingRun(ctx context.Context, window string) error {
	sz := r.cfg.Sizes
	variant, name := "default", "scaling"
	env := map[string]string{"CHATFLEET_MAX_CONCURRENT_LLM_STREAMS": strconv.Itoa(sz.ScalingLLMStreams)}
	if window != "" {
		variant, name = "chunk-window-"+window, "scaling-window"+window
		env["CHATFLEET_CHUNK_WINDOW"] = window
	}
	var base float64
	for _, w := range sz.ScalingWorkers {
		up := delayedUpstream(sz.ScalingDelay)
		f, err := r.startFleet(ctx, fleetSpec{name: fmt.Sprintf("%s-%dw", name, w), workers: w, upstream: up.URL(), env: env})
		if err != nil {
			up.Close()
			return err
		}
		conc := 2 * w * sz.ScalingLLMStreams
		kind := fmt.Sprintf("scale%d%s", w, window)
		runLoad(ctx, f.pubs, loadSpec{n: conc, concurrency: conc, job: r.uniqueJobs(kind + "warm")})
		m := startCPU(r.cpuGroups(f))
		recs, wall := runLoad(ctx, f.pubs, loadSpec{n: sz.ScalingJobsPerWorker * w, concurrency: conc, job: r.uniqueJobs(kind)})
		cpu := m.stop()
		f.close()
		up.Close()
		res := ScalingResult{Workers: w, Variant: variant, LLMStreams: sz.ScalingLLMStreams, DelayMS: msf(sz.ScalingDelay), Concurrency: conc,
			Load: summarizeLoad(recs, wall), CPU: cpu, PerWorker: map[string]int{},
			IdealPerS: round1(float64(w*sz.ScalingLLMStreams) / sz.ScalingDelay.Seconds())}
		for i := range recs {
			if recs[i].worker != "" {
				res.PerWorker[recs[i].worker]++
			}
		}
		res.CPUPerJobUS = perJob(cpu, res.Load.Jobs)
		if w == 1 || base == 0 {
			base = res.Load.JobsPerS / float64(w)
		}
		res.Efficiency = ratio(res.Load.JobsPerS, float64(w)*base)
		r.rep.Scaling = append(r.rep.Scaling, res)
		r.progress("   %d worker(s), %s: %.0f jobs/s (ideal %.0f), efficiency %.3f, errors %d", w, variant, res.Load.JobsPerS, res.IdealPerS, res.Efficiency, res.Load.Errors)
	}
	return nil
}
