package harness

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/chatfleet/chatfleet/llm/llmtest"
)

// GlobalCapResult is one step of the global-cap scenario: the upstream's
// concurrent streams over time under a fleet-wide cap, with more workers.
type GlobalCapResult struct {
	Workers int `json:"workers"`
	// Variant is "fleet" (CHATFLEET_FLEET_MAX_LLM_STREAMS), or "local":
	// the reference, one worker with the cap as its own upstream slots.
	Variant     string     `json:"variant"`
	Cap         int        `json:"cap"`
	LLMStreams  int        `json:"llm_streams_per_worker"`
	DelayMS     float64    `json:"upstream_ms_per_answer"`
	Concurrency int        `json:"concurrency"`
	Load        LoadResult `json:"load"`
	// The upstream's concurrent streams, sampled every SampleMS: the most
	// seen, the mean, the share of samples at the cap, and the series.
	SampleMS     float64 `json:"sample_ms"`
	UpstreamMax  int     `json:"upstream_max"`
	UpstreamMean float64 `json:"upstream_mean"`
	AtCap        float64 `json:"at_cap"`
	Series       []int   `json:"series"`
}

// globalCapSample is how often the scenario samples the upstream.
const globalCapSample = 10 * time.Millisecond

// globalCap: an upstream taking ScalingDelay per answer, a fleet-wide cap
// of GlobalCap streams, 1, 2, 4 workers each allowed ScalingLLMStreams
// (more than the cap), a closed loop with four times the cap in flight:
// the upstream should see the cap, never more, whatever the workers. First
// the reference: one worker whose own upstream slots are the cap.
func (r *runner) globalCap(ctx context.Context) error {
	sz := r.cfg.Sizes
	if err := r.globalCapStep(ctx, 1, "local", map[string]string{"CHATFLEET_MAX_CONCURRENT_LLM_STREAMS": strconv.Itoa(sz.GlobalCap)}); err != nil {
		return err
	}
	env := map[string]string{
		"CHATFLEET_MAX_CONCURRENT_LLM_STREAMS": strconv.Itoa(sz.ScalingLLMStreams),
		"CHATFLEET_FLEET_MAX_LLM_STREAMS":      strconv.Itoa(sz.GlobalCap),
	}
	for _, w := range sz.GlobalCapWorkers {
		if err := r.globalCapStep(ctx, w, "fleet", env); err != nil {
			return err
		}
	}
	return nil
}

// globalCapStep runs one step: w workers with env.
func (r *runner) globalCapStep(ctx context.Context, w int, variant string, env map[string]string) error {
	sz := r.cfg.Sizes
	up := delayedUpstream(sz.ScalingDelay)
	defer up.Close()
	f, err := r.startFleet(ctx, fleetSpec{name: fmt.Sprintf("globalcap-%s-%dw", variant, w), workers: w, upstream: up.URL(), env: env})
	if err != nil {
		return err
	}
	conc := 4 * sz.GlobalCap
	stop := sampleActive(up)
	recs, wall := runLoad(ctx, f.pubs, loadSpec{n: sz.GlobalCapJobs, concurrency: conc, job: r.uniqueJobs(fmt.Sprintf("cap%s%d", variant, w))})
	series := stop()
	f.close()
	streams, _ := strconv.Atoi(env["CHATFLEET_MAX_CONCURRENT_LLM_STREAMS"])
	res := GlobalCapResult{Workers: w, Variant: variant, Cap: sz.GlobalCap, LLMStreams: streams, DelayMS: msf(sz.ScalingDelay),
		Concurrency: conc, Load: summarizeLoad(recs, wall), SampleMS: msf(globalCapSample), Series: series}
	sum, at := 0, 0
	for _, n := range series {
		res.UpstreamMax = max(res.UpstreamMax, n)
		sum += n
		if n == sz.GlobalCap {
			at++
		}
	}
	if len(series) > 0 {
		res.UpstreamMean = round1(float64(sum) / float64(len(series)))
		res.AtCap = round1(100*float64(at)/float64(len(series))) / 100
	}
	r.rep.GlobalCap = append(r.rep.GlobalCap, res)
	r.progress("   %d worker(s), %s cap %d: upstream streams max %d, mean %.1f, at the cap %.0f%% of the time; %.0f jobs/s, errors %d",
		w, variant, sz.GlobalCap, res.UpstreamMax, res.UpstreamMean, 100*res.AtCap, res.Load.JobsPerS, res.Load.Errors)
	return nil
}

// sampleActive samples up's concurrent streams every globalCapSample until
// the returned stop, which returns the samples.
func sampleActive(up *llmtest.Server) (stop func() []int) {
	var series []int
	quit, done := make(chan struct{}), make(chan struct{})
	var once sync.Once
	go func() { // owned by stop
		defer close(done)
		t := time.NewTicker(globalCapSample)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				series = append(series, up.Active(func(llmtest.Request) bool { return true }))
			}
		}
	}()
	return func() []int {
		once.Do(func() { close(quit) })
		<-done
		return series
	}
}
