package harness

import (
	"context"
	"fmt"
	"time"

	"github.com/chatfleet/chatfleet/llm/llmtest"
)

// HotpathResult is the hotpath scenario: this build against a previous one
// (Config.BeforeBinary), measured in turns within each round so that a
// busy machine's noise reaches both, and the asynq peer on the same paced
// upstream.
type HotpathResult struct {
	TokenDelayMS float64      `json:"token_delay_ms"`
	Tokens       int          `json:"tokens"`
	Runs         []HotpathRun `json:"runs"`
	Peer         []HotpathRun `json:"peer,omitempty"`
	Errors       []string     `json:"errors,omitempty"`
}

// HotpathRun is one measurement of one build in one round.
type HotpathRun struct {
	Round   int    `json:"round"`
	Build   string `json:"build"`   // "before", "after" or "asynq"
	Measure string `json:"measure"` // paced-<n>w, instant-1w, low-ttfc
	Load    LoadResult
	CPU     CPU                `json:"cpu"`
	PerJob  map[string]float64 `json:"cpu_per_job_us"`
	// JobsPerCore is jobs/s divided by the cores every process used.
	JobsPerCore float64 `json:"jobs_per_s_per_core"`
	// TTFCAboveUpstreamP50 is low-ttfc's p50 minus the upstream's own.
	TTFCAboveUpstreamP50 float64 `json:"ttfc_above_upstream_p50_ms,omitempty"`
}

// pacedUpstream streams the 16 tokens delay apart, the first at once: a
// real model's spacing; wider than the chunk window (HotpathDelay), every
// token is its own chunk event.
func pacedUpstream(delay time.Duration) *llmtest.Server {
	return llmtest.New(llmtest.WithScript(func(llmtest.Request) llmtest.Reply {
		return llmtest.Reply{Tokens: tokens16, Delay: delay}
	}))
}

// hotpath measures, per round and build: paced unique jobs with each
// worker count, default-window throughput (instant upstream), and time to
// first chunk one job at a time; then the asynq peer on the paced
// upstream and at low load with 1 ms polling.
func (r *runner) hotpath(ctx context.Context) error {
	sz := r.cfg.Sizes
	res := &HotpathResult{TokenDelayMS: msf(sz.HotpathDelay), Tokens: answerTokens}
	r.rep.Hotpath = res
	builds := []struct{ name, bin string }{{"after", ""}}
	if r.cfg.BeforeBinary != "" {
		builds = append([]struct{ name, bin string }{{"before", r.cfg.BeforeBinary}}, builds...)
	}
	paced := pacedUpstream(sz.HotpathDelay)
	defer paced.Close()
	instant := instantUpstream()
	defer instant.Close()
	stamp, err := newStampUpstream(0, 0)
	if err != nil {
		return err
	}
	defer stamp.close()

	for round := 1; round <= sz.HotpathRounds; round++ {
		direct, err := directTTFC(ctx, stamp.URL(), 200)
		if err != nil {
			return err
		}
		upstreamP50 := summarize(direct).P50
		for i := range builds {
			// Alternate the order each round, so neither build always
			// runs first.
			b := builds[i]
			if round%2 == 0 {
				b = builds[len(builds)-1-i]
			}
			for _, w := range sz.HotpathWorkers {
				run, err := r.hotpathLoad(ctx, b.bin, w, paced.URL(), fmt.Sprintf("paced-%dw", w), sz.HotpathConcurrency)
				r.hotpathRecord(res, round, b.name, run, err)
			}
			run, err := r.hotpathLoad(ctx, b.bin, 1, instant.URL(), "instant-1w", sz.HotpathConcurrency)
			r.hotpathRecord(res, round, b.name, run, err)
			run, err = r.hotpathLoad(ctx, b.bin, 1, stamp.URL(), "low-ttfc", 1)
			if err == nil {
				run.TTFCAboveUpstreamP50 = round3(run.Load.TTFC.P50 - upstreamP50)
			}
			r.hotpathRecord(res, round, b.name, run, err)
		}
		r.hotpathPeer(ctx, res, round, paced.URL(), stamp.URL())
	}
	return nil
}

func (r *runner) hotpathRecord(res *HotpathResult, round int, build string, run HotpathRun, err error) {
	if err != nil {
		res.Errors = append(res.Errors, fmt.Sprintf("round %d %s %s: %v", round, build, run.Measure, err))
		return
	}
	run.Round, run.Build = round, build
	res.Runs = append(res.Runs, run)
	r.progress("   round %d %-6s %-10s %7.0f jobs/s, %6.0f µs CPU/job, %5.0f jobs/s/core, TTFC p50 %.2f ms, errors %d",
		round, build, run.Measure, run.Load.JobsPerS, run.PerJob["total"], run.JobsPerCore, run.Load.TTFC.P50, run.Load.Errors)
}

// hotpathLoad runs one fleet of bin with workers workers against
// upstream: a warm-up, then HotpathJobs unique jobs (HotpathLowJobs when
// one at a time) with concurrency in flight.
func (r *runner) hotpathLoad(ctx context.Context, bin string, workers int, upstream, measure string, concurrency int) (HotpathRun, error) {
	sz := r.cfg.Sizes
	run := HotpathRun{Measure: measure}
	f, err := r.startFleet(ctx, fleetSpec{name: "hotpath-" + measure, workers: workers, upstream: upstream, bin: bin,
		env: map[string]string{"CHATFLEET_MAX_CONCURRENT_LLM_STREAMS": "256"}})
	if err != nil {
		return run, err
	}
	defer f.close()
	jobs := sz.HotpathJobs
	if concurrency == 1 {
		jobs = sz.HotpathLowJobs
	}
	kind := "hp" + measure + r.runID + fmt.Sprint(r.seq)
	runLoad(ctx, f.pubs, loadSpec{n: min(jobs/10+1, 200), concurrency: concurrency, job: r.uniqueJobs(kind + "warm")})
	m := startCPU(r.cpuGroups(f))
	recs, wall := runLoad(ctx, f.pubs, loadSpec{n: jobs, concurrency: concurrency, job: r.uniqueJobs(kind)})
	run.CPU = m.stop()
	run.Load = summarizeLoad(recs, wall)
	run.PerJob = perJob(run.CPU, run.Load.Jobs)
	if run.CPU.TotalS > 0 {
		run.JobsPerCore = round1(run.Load.JobsPerS / (run.CPU.TotalS / run.CPU.WallS))
	}
	return run, nil
}

// hotpathPeer runs asynq + Redis on the paced upstream with each worker
// count, and one job at a time with 1 ms polling on the stamping upstream.
func (r *runner) hotpathPeer(ctx context.Context, res *HotpathResult, round int, paced, stamp string) {
	redisPath, found := r.redisServer()
	if !r.cfg.Peer || !found || r.peerBin == "" {
		return
	}
	sz := r.cfg.Sizes
	redisProc, addr, err := r.startRedis(ctx, redisPath)
	if err != nil {
		res.Errors = append(res.Errors, fmt.Sprintf("round %d redis: %v", round, err))
		return
	}
	defer func() { _ = redisProc.stop(10 * time.Second) }()
	record := func(p HotpathRun, err error) {
		if err != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("round %d asynq %s: %v", round, p.Measure, err))
			return
		}
		p.Round, p.Build = round, "asynq"
		p.PerJob = perJob(p.CPU, p.Load.Jobs)
		if p.CPU.TotalS > 0 {
			p.JobsPerCore = round1(p.Load.JobsPerS / (p.CPU.TotalS / p.CPU.WallS))
		}
		res.Peer = append(res.Peer, p)
		r.progress("   round %d asynq  %-10s %7.0f jobs/s, %6.0f µs CPU/job, %5.0f jobs/s/core, TTFC p50 %.2f ms, errors %d",
			round, p.Measure, p.Load.JobsPerS, p.PerJob["total"], p.JobsPerCore, p.Load.TTFC.P50, p.Load.Errors)
	}
	for _, w := range sz.HotpathWorkers {
		p := &peerRun{r: r, bin: r.peerBin, addr: addr, upstream: paced, redis: redisProc, seq: round * 100}
		run := HotpathRun{Measure: fmt.Sprintf("paced-%dw", w)}
		queue := fmt.Sprintf("hp%d%d", round, w)
		ws, err := p.startWorkers(ctx, w, 0, queue)
		if err != nil {
			record(run, err)
			continue
		}
		groups := map[string][]int{"redis": {redisProc.pid()}}
		for _, wp := range ws {
			groups["peer-workers"] = append(groups["peer-workers"], wp.pid())
		}
		run.Load, run.CPU, err = p.load(ctx, queue, sz.HotpathJobs, min(sz.HotpathJobs/10+1, 200), sz.HotpathConcurrency, groups)
		stopAll(ws)
		record(run, err)
	}
	p := &peerRun{r: r, bin: r.peerBin, addr: addr, upstream: stamp, redis: redisProc, seq: round*100 + 50}
	run := HotpathRun{Measure: "low-ttfc-poll-1ms"}
	l, err := p.latency(ctx, time.Millisecond, sz.HotpathLowJobs)
	if err == nil {
		run.Load = l.Low
	}
	record(run, err)
}
