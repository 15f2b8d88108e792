package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// peerRun runs the asynq peer's processes (bench/peers/asynq): its
// workers and its load generator, against one redis-server and upstream.
type peerRun struct {
	r        *runner
	bin      string
	addr     string
	upstream string
	redis    *proc
	seq      int
}

func (p *peerRun) startWorkers(ctx context.Context, n int, poll time.Duration, queue string) ([]*proc, error) {
	var ws []*proc
	for i := range n {
		w, err := startProc(procSpec{name: fmt.Sprintf("asynq-%s-w%d", queue, i+1), bin: p.bin, logDir: p.r.logDir, readyLine: "asynqpeer worker ready",
			args: []string{"worker", "-redis", p.addr, "-upstream", p.upstream, "-concurrency", strconv.Itoa(peerConcurrency), "-poll", poll.String(), "-queue", queue}})
		if err != nil {
			stopAll(ws)
			return nil, err
		}
		ws = append(ws, w)
		if err := w.waitReady(ctx, 20*time.Second); err != nil {
			stopAll(ws)
			return nil, err
		}
	}
	return ws, nil
}

func stopAll(ps []*proc) {
	for _, p := range ps {
		_ = p.stop(10 * time.Second)
	}
}

// peerLoad is what asynqpeer load prints.
type peerLoad struct {
	Jobs       int     `json:"jobs"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error"`
	WallNS     int64   `json:"wall_ns"`
	TTFCNS     []int64 `json:"ttfc_ns"`
	DoneNS     []int64 `json:"done_ns"`
	Chunks     int64   `json:"chunks"`
}

// load runs asynqpeer load and summarises it; cpu measures the given
// groups plus the load process over its whole life (warm-up included).
func (p *peerRun) load(ctx context.Context, queue string, jobs, warmup, concurrency int, groups map[string][]int) (LoadResult, CPU, error) {
	p.seq++
	lp, err := startProc(procSpec{name: fmt.Sprintf("asynq-load-%s-%d", queue, p.seq), bin: p.bin, logDir: p.r.logDir, keepStdout: true,
		args: []string{"load", "-redis", p.addr, "-jobs", strconv.Itoa(jobs), "-warmup", strconv.Itoa(warmup), "-concurrency", strconv.Itoa(concurrency),
			"-queue", queue, "-prefix", "reply" + strconv.Itoa(p.seq), "-tag", p.r.runID + queue}})
	if err != nil {
		return LoadResult{}, CPU{}, err
	}
	groups["peer-load"] = []int{lp.pid()}
	m := startCPU(groups)
	// Read the CPU until the process exits: after that /proc has no
	// record of it; the meter keeps the last value read.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case <-lp.exited:
			break wait
		case <-tick.C:
			m.stop()
		case <-ctx.Done():
			_ = lp.stop(5 * time.Second)
			return LoadResult{}, CPU{}, ctx.Err()
		}
	}
	cpu := m.stop()
	if err := lp.waitErr; err != nil {
		return LoadResult{}, cpu, fmt.Errorf("asynqpeer load: %v\n%s", err, lp.tail(2000))
	}
	var out peerLoad
	if err := json.Unmarshal(lp.stdout.Bytes(), &out); err != nil {
		return LoadResult{}, cpu, fmt.Errorf("asynqpeer load output: %w", err)
	}
	res := LoadResult{Jobs: out.Jobs, Errors: out.Errors, FirstError: out.FirstError, WallS: round3(time.Duration(out.WallNS).Seconds())}
	res.TTFC, res.Done = summarize(nsDurations(out.TTFCNS)), summarize(nsDurations(out.DoneNS))
	if out.WallNS > 0 {
		res.JobsPerS = round1(float64(len(out.DoneNS)) / time.Duration(out.WallNS).Seconds())
	}
	if out.Jobs > 0 {
		res.ChunksPerJob = round3(float64(out.Chunks) / float64(out.Jobs))
		res.EventsPerJob = res.ChunksPerJob + 1
	}
	return res, cpu, nil
}

func nsDurations(ns []int64) []time.Duration {
	out := make([]time.Duration, len(ns))
	for i, v := range ns {
		out[i] = time.Duration(v)
	}
	return out
}

func (p *peerRun) throughput(ctx context.Context, workers int) (PeerThroughput, error) {
	sz := p.r.cfg.Sizes
	queue := fmt.Sprintf("tp%d", workers)
	ws, err := p.startWorkers(ctx, workers, 0, queue)
	if err != nil {
		return PeerThroughput{}, err
	}
	defer stopAll(ws)
	groups := map[string][]int{"redis": {p.redis.pid()}}
	for _, w := range ws {
		groups["peer-workers"] = append(groups["peer-workers"], w.pid())
	}
	load, cpu, err := p.load(ctx, queue, sz.PeerJobs, sz.ThroughputWarmup, sz.ThroughputConcurrency, groups)
	if err != nil {
		return PeerThroughput{}, err
	}
	return PeerThroughput{Workers: workers, Poll: pollName(0), Load: load, CPU: cpu}, nil
}

func (p *peerRun) latency(ctx context.Context, poll time.Duration, jobs int) (PeerLatency, error) {
	queue := "lat" + strings.ReplaceAll(poll.String(), ".", "_")
	ws, err := p.startWorkers(ctx, 1, poll, queue)
	if err != nil {
		return PeerLatency{}, err
	}
	defer stopAll(ws)
	groups := map[string][]int{"redis": {p.redis.pid()}, "peer-workers": {ws[0].pid()}}
	idle := measureIdle(ctx, groups, p.r.cfg.Sizes.PeerIdle)
	load, _, err := p.load(ctx, queue, jobs, 3, 1, groups)
	if err != nil {
		return PeerLatency{}, err
	}
	return PeerLatency{Poll: pollName(poll), Low: load, Idle: idle}, nil
}
