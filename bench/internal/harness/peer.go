package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// peerConcurrency is the asynq server's concurrency per worker process:
// the same as a chatfleet worker's request slots (64 by default).
const peerConcurrency = 64

// PeerResult is the asynq + Redis pub/sub stack.
type PeerResult struct {
	Skipped       string           `json:"skipped,omitempty"`
	Redis         string           `json:"redis,omitempty"`
	Concurrency   int              `json:"concurrency_per_worker"`
	Throughput    []PeerThroughput `json:"throughput,omitempty"`
	Latency       []PeerLatency    `json:"latency,omitempty"`
	Errors        []string         `json:"errors,omitempty"`
	ChatfleetIdle *IdleCPU         `json:"chatfleet_idle,omitempty"`
}

// PeerThroughput is one peer throughput run.
type PeerThroughput struct {
	Workers int        `json:"workers"`
	Poll    string     `json:"poll"`
	Load    LoadResult `json:"load"`
	CPU     CPU        `json:"cpu"`
}

// PeerLatency is the peer at low load with one polling interval.
type PeerLatency struct {
	Poll string     `json:"poll"`
	Low  LoadResult `json:"low"`
	Idle IdleCPU    `json:"idle"`
}

// IdleCPU is the CPU a stack burns doing nothing.
type IdleCPU struct {
	Seconds float64            `json:"seconds"`
	Cores   map[string]float64 `json:"cores"` // per process group
}

// peer runs the asynq + Redis pub/sub stack (bench/peers/asynq, its own
// module) on the same machine with the same upstream and load: unique
// jobs as fast as it goes with 1 and 2 worker processes, then one job at
// a time with asynq's default polling and with polling cut to 1 ms, and
// what each burns while idle; chatfleet's idle CPU beside it.
func (r *runner) peer(ctx context.Context) error {
	sz := r.cfg.Sizes
	res := &PeerResult{Concurrency: peerConcurrency}
	r.rep.Peer = res
	if !r.cfg.Peer {
		res.Skipped = "not requested (--peer=false)"
		return nil
	}
	redisPath, found := r.redisServer()
	if !found {
		res.Skipped = "redis-server not found (Debian: apt-get install -y redis-server)"
		return nil
	}
	if out, err := exec.CommandContext(ctx, redisPath, "--version").Output(); err == nil {
		res.Redis = strings.TrimSpace(string(out))
	}
	bin := r.peerBin // built by prepare
	redisProc, addr, err := r.startRedis(ctx, redisPath)
	if err != nil {
		return err
	}
	defer func() { _ = redisProc.stop(10 * time.Second) }()
	up := instantUpstream()
	defer up.Close()

	p := &peerRun{r: r, bin: bin, addr: addr, upstream: up.URL(), redis: redisProc}
	for _, w := range sz.PeerWorkers {
		t, err := p.throughput(ctx, w)
		if err != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("throughput %d worker(s): %v", w, err))
			continue
		}
		res.Throughput = append(res.Throughput, t)
		r.progress("   asynq %d worker(s): %.0f jobs/s, TTFC p50 %.2f ms, errors %d", w, t.Load.JobsPerS, t.Load.TTFC.P50, t.Load.Errors)
	}
	for _, poll := range []time.Duration{time.Millisecond, 0} {
		jobs := sz.PeerLatencyJobs
		if poll == 0 {
			// About a second per job: fewer of them.
			jobs = max(1, min(jobs, 30))
		}
		l, err := p.latency(ctx, poll, jobs)
		if err != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("latency poll %s: %v", pollName(poll), err))
			continue
		}
		res.Latency = append(res.Latency, l)
		r.progress("   asynq poll %s: TTFC p50 %.2f ms p99 %.2f ms; idle CPU %s", l.Poll, l.Low.TTFC.P50, l.Low.TTFC.P99, coresMap(l.Idle.Cores))
	}
	idle, err := r.chatfleetIdle(ctx, up.URL())
	if err != nil {
		res.Errors = append(res.Errors, fmt.Sprintf("chatfleet idle: %v", err))
	} else {
		res.ChatfleetIdle = idle
	}
	return nil
}

// startRedis starts redis-server (path) on a free port without
// persistence and waits until it accepts connections at addr; the caller
// stops it.
func (r *runner) startRedis(ctx context.Context, path string) (p *proc, addr string, err error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	addr = "127.0.0.1:" + strconv.Itoa(port)
	p, err = startProc(procSpec{name: "redis", bin: path, logDir: r.logDir,
		args: []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"}})
	if err != nil {
		return nil, "", err
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	err = waitTCP(wctx, addr)
	cancel()
	if err != nil {
		_ = p.stop(10 * time.Second)
		return nil, "", err
	}
	return p, addr, nil
}

func pollName(d time.Duration) string {
	if d == 0 {
		return "1s (default)"
	}
	return d.String()
}

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

// measureIdle measures what groups burn over d with nothing to do.
func measureIdle(ctx context.Context, groups map[string][]int, d time.Duration) IdleCPU {
	time.Sleep(200 * time.Millisecond) // past start-up
	m := startCPU(groups)
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	c := m.stop()
	delete(c.Cores, "bench")
	return IdleCPU{Seconds: c.WallS, Cores: c.Cores}
}

// chatfleetIdle measures one idle chatfleet worker and the NATS server.
func (r *runner) chatfleetIdle(ctx context.Context, upstream string) (*IdleCPU, error) {
	f, err := r.startFleet(ctx, fleetSpec{name: "idle", workers: 1, upstream: upstream})
	if err != nil {
		return nil, err
	}
	defer f.close()
	idle := measureIdle(ctx, r.cpuGroups(f), r.cfg.Sizes.PeerIdle)
	return &idle, nil
}
