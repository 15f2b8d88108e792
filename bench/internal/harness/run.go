package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"
)

// runner is one benchmark run.
type runner struct {
	cfg     Config
	bin     string // chatfleet (or the profiling wrapper)
	natsURL string
	nats    *proc // nil when given a URL
	logDir  string
	runID   string // makes prompts unique across runs against one server
	seq     int    // numbers fleets: their prefixes
	rep     *Report

	chartsBin, peerBin string // built by prepare when the run needs them
}

// Run runs the benchmark and returns its report. The report is also
// written to cfg.Out (JSON), cfg.Table and cfg.ChartsDir when set. A
// scenario that fails is recorded in Report.Errors and the run goes on.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	r, cleanup, err := prepare(ctx, cfg)
	defer cleanup()
	if err != nil {
		return nil, err
	}
	return r.run(ctx)
}

// prepare applies cfg's defaults and builds every binary the run needs
// (chatfleet, and the charts and the asynq peer when asked for), so the
// run itself compiles nothing. cleanup removes a temporary work
// directory; it must be called, even after an error.
func prepare(ctx context.Context, cfg Config) (r *runner, cleanup func(), err error) {
	cleanup = func() {}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.Table == nil {
		cfg.Table = io.Discard
	}
	if cfg.Sizes.Connections == 0 {
		cfg.Sizes = DefaultSizes()
	}
	if len(cfg.Scenarios) == 0 {
		cfg.Scenarios = slices.Clone(ScenarioNames)
	}
	for _, s := range cfg.Scenarios {
		if !slices.Contains(ScenarioNames, s) && !slices.Contains(OptInScenarios, s) {
			return nil, cleanup, fmt.Errorf("bench: unknown scenario %q (have %s)", s, strings.Join(append(ScenarioNames, OptInScenarios...), ", "))
		}
	}
	if cfg.ModuleDir == "" {
		if cfg.ModuleDir, err = findModule(); err != nil {
			return nil, cleanup, err
		}
	}
	if cfg.WorkDir == "" {
		if cfg.WorkDir, err = os.MkdirTemp("", "chatfleet-bench-"); err != nil {
			return nil, cleanup, err
		}
		if !cfg.KeepWorkDir {
			dir := cfg.WorkDir
			cleanup = func() { os.RemoveAll(dir) }
		} else {
			fmt.Fprintf(cfg.Progress, "work dir (kept): %s\n", cfg.WorkDir)
		}
	}
	r = &runner{cfg: cfg, logDir: filepath.Join(cfg.WorkDir, "logs"), runID: strconv.FormatInt(time.Now().UnixNano()%1e9, 36)}
	if err := os.MkdirAll(r.logDir, 0o755); err != nil {
		return nil, cleanup, err
	}
	if err := r.build(ctx); err != nil {
		return nil, cleanup, err
	}
	return r, cleanup, nil
}

// run runs the scenarios with the binaries prepare built.
func (r *runner) run(ctx context.Context) (*Report, error) {
	cfg := r.cfg
	r.rep = &Report{Started: time.Now().UTC(), Machine: machine(), Command: strings.Join(os.Args, " "), Sizes: cfg.Sizes, WorkerEnv: cfg.WorkerEnv}
	if cfg.ProfileDir != "" {
		if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
			return nil, err
		}
		f, err := os.Create(filepath.Join(cfg.ProfileDir, "bench.cpu.pprof"))
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	if err := r.startNATS(ctx); err != nil {
		return nil, err
	}
	defer r.stopNATS()

	for _, name := range cfg.Scenarios {
		if ctx.Err() != nil {
			break
		}
		r.progress("== %s", name)
		start := time.Now()
		if err := r.scenario(ctx, name); err != nil {
			r.rep.Errors = append(r.rep.Errors, fmt.Sprintf("%s: %v", name, err))
			r.progress("   %s failed: %v", name, err)
		}
		r.progress("   %s took %s (load avg %s)", name, time.Since(start).Round(time.Millisecond), loadavg())
	}
	r.rep.Machine.LoadAvgAt = loadavg()
	r.rep.Ratios = r.rep.ratios()
	r.rep.Targets = r.rep.targets()
	r.rep.DurationS = round1(time.Since(r.rep.Started).Seconds())
	r.rep.writeTable(cfg.Table)
	if cfg.Out != "" {
		if err := writeJSON(cfg.Out, r.rep); err != nil {
			return r.rep, err
		}
	}
	if cfg.ChartsDir != "" {
		if err := r.charts(ctx); err != nil {
			r.rep.Errors = append(r.rep.Errors, fmt.Sprintf("charts: %v", err))
			fmt.Fprintf(cfg.Table, "ERROR: charts: %v\n", err)
		}
	}
	return r.rep, ctx.Err()
}

func (r *runner) scenario(ctx context.Context, name string) error {
	switch name {
	case "baselines":
		return r.baselines(ctx)
	case "throughput":
		return r.throughput(ctx)
	case "latency":
		return r.latency(ctx)
	case "herd":
		return r.herd(ctx)
	case "cache":
		return r.cache(ctx)
	case "scaling":
		return r.scaling(ctx)
	case "globalcap":
		return r.globalCap(ctx)
	case "memory":
		return r.memory(ctx)
	case "large":
		return r.largeAnswer(ctx)
	case "gateway":
		return r.gateway(ctx)
	case "queues":
		return r.queues(ctx)
	case "peer":
		return r.peer(ctx)
	case "hotpath":
		return r.hotpath(ctx)
	}
	return fmt.Errorf("unknown scenario %q", name)
}

func (r *runner) progress(format string, a ...any) {
	fmt.Fprintf(r.cfg.Progress, format+"\n", a...)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// findModule returns the nearest directory at or above the working
// directory whose go.mod declares chatfleet's module.
func findModule() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/chatfleet/chatfleet\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("bench: cannot find chatfleet's go.mod above the working directory; set ModuleDir")
		}
		dir = parent
	}
}

// startNATS starts `chatfleet dev` with no workers: the embedded NATS
// server (internal/natsserver) in a process of its own, so its CPU is
// measured apart from the workers' and the load generator's.
func (r *runner) startNATS(ctx context.Context) error {
	if r.cfg.NATSURL != "" {
		r.natsURL = r.cfg.NATSURL
		r.rep.NATS = "given: " + r.cfg.NATSURL
		return nil
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	env := []string{
		"CHATFLEET_DEV_WORKERS=0",
		"CHATFLEET_DEV_LISTEN=127.0.0.1:" + strconv.Itoa(port),
		"CHATFLEET_DEV_DATA_DIR=" + filepath.Join(r.cfg.WorkDir, "nats"),
		"CHATFLEET_LOG_FORMAT=json",
		// Keeps dev mode from starting its simulated model; nothing calls it.
		"CHATFLEET_LLM_BASE_URL=http://127.0.0.1:1/v1",
		// Nor its gateway: the benchmark runs its own, and 8080 may be taken.
		"CHATFLEET_GATEWAY_ADDR=",
	}
	if r.cfg.ProfileDir != "" {
		env = append(env, "CHATFLEET_BENCH_CPUPROFILE="+filepath.Join(r.cfg.ProfileDir, "nats.cpu.pprof"))
	}
	p, err := startProc(procSpec{name: "nats", bin: r.bin, args: []string{"dev"}, env: env, logDir: r.logDir, readyLine: "chatfleet dev is up"})
	if err != nil {
		return err
	}
	r.nats = p
	if err := p.waitReady(ctx, 30*time.Second); err != nil {
		_ = p.stop(5 * time.Second)
		return err
	}
	r.natsURL = fmt.Sprintf("nats://127.0.0.1:%d", port)
	r.rep.NATS = "separate process: chatfleet dev with no workers (embedded nats-server, file store), " + r.natsURL
	return nil
}

func (r *runner) stopNATS() {
	if r.nats != nil {
		_ = r.nats.stop(10 * time.Second)
	}
}
