package harness

import (
	"context"
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
