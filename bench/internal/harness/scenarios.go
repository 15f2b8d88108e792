package harness

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
)

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

// above is d minus the upstream's own, per percentile.
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

// herd: K identical jobs at once. The upstream holds its stream before
// the first token until every job has been accepted (has its meta event),
// so the herd is fully concurrent however long submitting K jobs takes;
// then it sends the answer. With dedupe off every job is its own leader:
// the gate waits for K upstream calls as well.
func (r *runner) herd(ctx context.Context) error {
	sz := r.cfg.Sizes
	for _, dedupe := range []bool{true, false} {
		for _, k := range sz.HerdKs {
			if !dedupe && k > sz.HerdNoDedupeMax {
				r.rep.Herd = append(r.rep.Herd, HerdResult{K: k, Dedupe: false, Workers: sz.HerdWorkers,
					Note: fmt.Sprintf("skipped: above HerdNoDedupeMax %d", sz.HerdNoDedupeMax)})
				continue
			}
			res, err := r.herdRun(ctx, k, dedupe)
			if err != nil {
				return err
			}
			r.rep.Herd = append(r.rep.Herd, res)
			r.progress("   K=%d dedupe=%v: %d upstream calls, lag p50 %.2f p99 %.2f max %.2f ms, errors %d %s", k, dedupe, res.UpstreamCalls, res.Lag.P50, res.Lag.P99, res.Lag.Max, res.Load.Errors, res.Note)
		}
	}
	return nil
}

func (r *runner) herdRun(ctx context.Context, k int, dedupe bool) (HerdResult, error) {
	sz := r.cfg.Sizes
	g := newGate()
	defer g.open()
	up := gatedUpstream(g.ch, -1)
	defer up.Close()
	env := map[string]string{
		"CHATFLEET_MAX_CONCURRENT_FOLLOWERS": strconv.Itoa(k + 64),
		"CHATFLEET_MAX_ACK_PENDING":          strconv.Itoa(max(20000, 2*k)),
		// The upstream holds every stream until the whole herd is in;
		// that may take longer than the default idle cut-off.
		"CHATFLEET_LLM_IDLE_TIMEOUT": "10m",
	}
	if !dedupe {
		// Every job leads: room for all of them on any worker.
		env["CHATFLEET_MAX_CONCURRENT_REQUESTS"] = strconv.Itoa(k + 64)
		env["CHATFLEET_MAX_CONCURRENT_LLM_STREAMS"] = strconv.Itoa(k + 64)
	}
	name := fmt.Sprintf("herd-%d-dedupe-%v", k, dedupe)
	f, err := r.startFleet(ctx, fleetSpec{name: name, workers: sz.HerdWorkers, upstream: up.URL(), env: env})
	if err != nil {
		return HerdResult{}, err
	}
	defer f.close()

	res := HerdResult{K: k, Dedupe: dedupe, Workers: sz.HerdWorkers, LagRef: "leader"}
	if !dedupe {
		res.LagRef = "first"
	}
	var metas atomic.Int64
	allIn := make(chan struct{})
	var once sync.Once
	start := time.Now()
	var opened time.Time
	go func() { // owned by herdRun: ends when the gate opens
		select {
		case <-allIn:
		case <-time.After(2 * time.Minute):
			res.Note = "gate opened by timeout: not every job was accepted"
		case <-ctx.Done():
		}
		if !dedupe {
			wctx, cancel := context.WithTimeout(ctx, time.Minute)
			if err := up.WaitCalls(wctx, k); err != nil {
				res.Note = fmt.Sprintf("gate opened with %d of %d upstream calls", up.Calls(), k)
			}
			cancel()
		}
		opened = time.Now()
		g.open()
	}()
	prompt := r.prompt(name, 0)
	no := false
	stopWatch := f.watchConsumers(ctx)
	recs, wall := runLoad(ctx, f.pubs, loadSpec{n: k, concurrency: k, timeout: 5 * time.Minute,
		job: func(int) protocol.Job {
			j := userJob(prompt)
			if !dedupe {
				j.Dedupe = &no
			}
			return j
		},
		onMeta: func(int, protocol.Role) {
			if metas.Add(1) == int64(k) {
				once.Do(func() { close(allIn) })
			}
		}})
	<-g.ch
	res.ReplyConsumers = stopWatch()
	res.ProducerConns = f.events.String()
	res.AcceptS = round3(opened.Sub(start).Seconds())
	res.Load = summarizeLoad(recs, wall)
	res.UpstreamCalls = up.Calls()
	var ref time.Time
	for i := range recs {
		rec := &recs[i]
		if rec.first.IsZero() {
			continue
		}
		if dedupe && rec.role == protocol.RoleLeader {
			ref = rec.first
		}
		if !dedupe && (ref.IsZero() || rec.first.Before(ref)) {
			ref = rec.first
		}
	}
	var lag, after []time.Duration
	for i := range recs {
		rec := &recs[i]
		if rec.first.IsZero() {
			continue
		}
		after = append(after, rec.first.Sub(opened))
		if ref.IsZero() || (dedupe && rec.role == protocol.RoleLeader) {
			continue
		}
		lag = append(lag, rec.first.Sub(ref))
	}
	res.Lag, res.AfterGate = summarize(lag), summarize(after)
	if dedupe && ref.IsZero() && res.Note == "" {
		res.Note = "no job reported role leader"
	}
	return res, nil
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

// memory: one worker holds N streams, stalled after two tokens: N
// followers of one generation, then N leaders of distinct ones. RSS
// before (after a warm-up) and while holding; the difference per stream.
func (r *runner) memory(ctx context.Context) error {
	for _, kind := range []string{"followers", "leaders"} {
		for _, n := range r.cfg.Sizes.MemoryNs {
			res, err := r.memoryRun(ctx, n, kind)
			if err != nil {
				return err
			}
			r.rep.Memory = append(r.rep.Memory, res)
			r.progress("   %d %s: RSS %s → %s, %s per stream, errors %d %s", n, kind, mib(res.RSSBefore), mib(res.RSSHolding), kib(res.BytesPerStream), res.Load.Errors, res.Note)
		}
	}
	return nil
}

func (r *runner) memoryRun(ctx context.Context, n int, kind string) (MemoryResult, error) {
	g := newGate()
	defer g.open()
	up := llmtest.New(llmtest.WithScript(func(req llmtest.Request) llmtest.Reply {
		if strings.Contains(req.LastUserMessage(), " warm ") {
			return llmtest.Reply{Tokens: tokens16}
		}
		return llmtest.Reply{Tokens: tokens16, StallAfter: 2, Release: g.ch}
	}))
	defer up.Close()
	env := map[string]string{
		"CHATFLEET_MAX_CONCURRENT_FOLLOWERS": strconv.Itoa(n + 64),
		"CHATFLEET_MAX_ACK_PENDING":          strconv.Itoa(max(20000, 2*n)),
		"CHATFLEET_LLM_IDLE_TIMEOUT":         "10m", // streams are held until all N are
	}
	if kind == "leaders" {
		env["CHATFLEET_MAX_CONCURRENT_REQUESTS"] = strconv.Itoa(n + 64)
		env["CHATFLEET_MAX_CONCURRENT_LLM_STREAMS"] = strconv.Itoa(n + 64)
	}
	f, err := r.startFleet(ctx, fleetSpec{name: fmt.Sprintf("memory-%d-%s", n, kind), workers: 1, upstream: up.URL(), env: env})
	if err != nil {
		return MemoryResult{}, err
	}
	defer f.close()
	pid := f.workers[0].pid()
	res := MemoryResult{N: n, Kind: kind}

	// Warm up every code path (leader, follower, cache), then let the
	// worker settle.
	sz := r.cfg.Sizes
	runLoad(ctx, f.pubs, loadSpec{n: sz.MemoryWarmup, concurrency: 64, job: func(i int) protocol.Job { return userJob(r.prompt("mem warm ", i%50)) }})
	time.Sleep(sz.MemorySettle)
	if res.RSSBefore, err = procRSS(pid); err != nil {
		return res, err
	}

	var firsts atomic.Int64
	held := make(chan struct{})
	var once sync.Once
	job := func(i int) protocol.Job { return userJob(r.prompt("mem "+kind, i)) }
	if kind == "followers" {
		prompt := r.prompt("mem followers", n)
		job = func(int) protocol.Job { return userJob(prompt) }
	}
	type out struct {
		recs []jobRec
		wall time.Duration
	}
	done := make(chan out, 1)
	go func() { // owned by memoryRun, which waits on done
		recs, wall := runLoad(ctx, f.pubs, loadSpec{n: n, concurrency: n, timeout: 5 * time.Minute, job: job,
			onFirst: func(int) {
				// Every stream has its first chunk: all are relaying.
				if firsts.Add(1) == int64(n) {
					once.Do(func() { close(held) })
				}
			}})
		done <- out{recs, wall}
	}()
	select {
	case <-held:
	case <-time.After(3 * time.Minute):
		res.Note = "not every stream had its first chunk"
	case o := <-done:
		g.open()
		res.Load = summarizeLoad(o.recs, o.wall)
		return res, fmt.Errorf("memory %s %d: the load ended before the streams were held: %s", kind, n, res.Load.FirstError)
	}
	time.Sleep(sz.MemorySettle)
	for range 5 {
		if rss, err := procRSS(pid); err == nil && rss > res.RSSHolding {
			res.RSSHolding = rss
		}
		time.Sleep(sz.MemorySettle / 5)
	}
	res.Held = int(firsts.Load())
	g.open()
	o := <-done
	res.Load = summarizeLoad(o.recs, o.wall)
	res.BytesPerStream = (res.RSSHolding - res.RSSBefore) / int64(n)
	return res, nil
}
