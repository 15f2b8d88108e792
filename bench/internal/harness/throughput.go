package harness

import (
	"context"
	"fmt"
	"strconv"
)

// ThroughputResult is one throughput run.
type ThroughputResult struct {
	Workers         int                `json:"workers"`
	Variant         string             `json:"variant"` // "default" or "chunk-window-0"
	Concurrency     int                `json:"concurrency"`
	Load            LoadResult         `json:"load"`
	UpstreamCalls   int                `json:"upstream_calls"`
	StoredReplyMsgs uint64             `json:"stored_reply_msgs"` // in the replies stream afterwards
	CPU             CPU                `json:"cpu"`
	CPUPerJobUS     map[string]float64 `json:"cpu_per_job_us"`
}

// throughput: unique jobs, 16-token answers from an instant upstream, as
// fast as the fleet goes, closed loop with ThroughputConcurrency jobs in
// flight; once per worker count, and once with chunk merging off.
func (r *runner) throughput(ctx context.Context) error {
	sz := r.cfg.Sizes
	type variant struct {
		workers int
		name    string
		env     map[string]string
	}
	var vs []variant
	for _, w := range sz.ThroughputWorkers {
		vs = append(vs, variant{w, "default", nil})
	}
	if sz.ThroughputNoMerge {
		vs = append(vs, variant{1, "chunk-window-0", map[string]string{"CHATFLEET_CHUNK_WINDOW": "0"}})
	}
	if g := sz.ThroughputGOGC; g > 0 {
		vs = append(vs, variant{1, fmt.Sprintf("gogc-%d", g), map[string]string{"GOGC": strconv.Itoa(g)}})
	}
	for _, v := range vs {
		res, err := r.throughputRun(ctx, v.workers, v.name, v.env)
		if err != nil {
			return err
		}
		r.rep.Throughput = append(r.rep.Throughput, res)
		r.progress("   %d worker(s) %s: %.0f jobs/s, TTFC p50 %.2f ms, errors %d", v.workers, v.name, res.Load.JobsPerS, res.Load.TTFC.P50, res.Load.Errors)
	}
	return nil
}

func (r *runner) throughputRun(ctx context.Context, workers int, variant string, env map[string]string) (ThroughputResult, error) {
	sz := r.cfg.Sizes
	up := instantUpstream()
	defer up.Close()
	f, err := r.startFleet(ctx, fleetSpec{name: fmt.Sprintf("throughput-%dw-%s", workers, variant), workers: workers, upstream: up.URL(), env: env})
	if err != nil {
		return ThroughputResult{}, err
	}
	defer f.close()
	kind := fmt.Sprintf("tp%d%s", workers, variant)
	runLoad(ctx, f.pubs, loadSpec{n: sz.ThroughputWarmup, concurrency: sz.ThroughputConcurrency, job: r.uniqueJobs(kind + "warm")})
	before := f.storedReplies(ctx)
	calls := up.Calls()
	m := startCPU(r.cpuGroups(f))
	recs, wall := runLoad(ctx, f.pubs, loadSpec{n: sz.ThroughputJobs, concurrency: sz.ThroughputConcurrency, job: r.uniqueJobs(kind)})
	cpu := m.stop()
	res := ThroughputResult{
		Workers: workers, Variant: variant, Concurrency: sz.ThroughputConcurrency,
		Load: summarizeLoad(recs, wall), UpstreamCalls: up.Calls() - calls,
		StoredReplyMsgs: f.storedReplies(ctx) - before, CPU: cpu,
	}
	res.CPUPerJobUS = perJob(cpu, res.Load.Jobs)
	return res, nil
}
