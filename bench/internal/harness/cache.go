package harness

import (
	"context"
)

// CacheResult is the cache-hit scenario.
type CacheResult struct {
	Warm          LoadResult         `json:"warm"`
	Hits          LoadResult         `json:"hits"`
	UpstreamCalls int                `json:"upstream_calls"`
	CPU           CPU                `json:"cpu"`
	CPUPerJobUS   map[string]float64 `json:"cpu_per_job_us"`
}

// cache: N unique jobs warm the cache, then the same N again are all
// answered from it.
func (r *runner) cache(ctx context.Context) error {
	sz := r.cfg.Sizes
	up := instantUpstream()
	defer up.Close()
	f, err := r.startFleet(ctx, fleetSpec{name: "cache", workers: 1, upstream: up.URL()})
	if err != nil {
		return err
	}
	defer f.close()
	res := &CacheResult{}
	r.rep.Cache = res
	recs, wall := runLoad(ctx, f.pubs, loadSpec{n: sz.CacheJobs, concurrency: sz.CacheConcurrency, job: r.uniqueJobs("cache")})
	res.Warm = summarizeLoad(recs, wall)
	m := startCPU(r.cpuGroups(f))
	recs, wall = runLoad(ctx, f.pubs, loadSpec{n: sz.CacheJobs, concurrency: sz.CacheConcurrency, job: r.uniqueJobs("cache")})
	res.CPU = m.stop()
	res.Hits = summarizeLoad(recs, wall)
	res.UpstreamCalls = up.Calls()
	res.CPUPerJobUS = perJob(res.CPU, res.Hits.Jobs)
	r.progress("   warm %.0f jobs/s, hits %.0f jobs/s (roles %v), upstream calls %d", res.Warm.JobsPerS, res.Hits.JobsPerS, res.Hits.Roles, res.UpstreamCalls)
	return nil
}
