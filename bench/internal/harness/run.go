package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/subjects"
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
		if !slices.Contains(ScenarioNames, s) {
			return nil, cleanup, fmt.Errorf("bench: unknown scenario %q (have %s)", s, strings.Join(ScenarioNames, ", "))
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
	case "memory":
		return r.memory(ctx)
	case "large":
		return r.largeAnswer(ctx)
	case "peer":
		return r.peer(ctx)
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

// build builds the binaries the run needs: the worker (chatfleet itself,
// or with ProfileDir the profiling wrapper, the same CLI with a CPU
// profile around it), the charts tool with ChartsDir, and the asynq peer
// when it will run (Peer, and redis-server found).
func (r *runner) build(ctx context.Context) error {
	bin := filepath.Join(r.cfg.WorkDir, "bin")
	if r.cfg.Binary != "" && r.cfg.ProfileDir == "" {
		r.bin = r.cfg.Binary
	} else {
		pkg := "./cmd/chatfleet"
		if r.cfg.ProfileDir != "" {
			pkg = "./bench/cmd/chatfleet-prof"
		}
		r.bin = filepath.Join(bin, "chatfleet")
		if err := r.goBuild(ctx, r.cfg.ModuleDir, r.bin, pkg); err != nil {
			return err
		}
	}
	if r.cfg.ChartsDir != "" {
		r.chartsBin = filepath.Join(bin, "charts")
		if err := r.goBuild(ctx, filepath.Join(r.cfg.ModuleDir, "bench", "charts"), r.chartsBin, "."); err != nil {
			return err
		}
	}
	if _, found := r.redisServer(); r.cfg.Peer && found {
		r.peerBin = filepath.Join(bin, "asynqpeer")
		if err := r.goBuild(ctx, filepath.Join(r.cfg.ModuleDir, "bench", "peers", "asynq"), r.peerBin, "."); err != nil {
			return err
		}
	}
	return nil
}

// redisServer returns the path of the redis-server binary, if found.
func (r *runner) redisServer() (string, bool) {
	name := r.cfg.RedisServer
	if name == "" {
		name = "redis-server"
	}
	path, err := exec.LookPath(name)
	return path, err == nil
}

// goBuild builds pkg in dir into out, saying how long it took: a first
// build on a cold cache takes minutes on a busy machine.
func (r *runner) goBuild(ctx context.Context, dir, out, pkg string) error {
	start := time.Now()
	r.progress("building %s", filepath.Join(dir, pkg))
	if err := goBuild(ctx, dir, out, pkg); err != nil {
		return err
	}
	r.progress("   built in %s", time.Since(start).Round(time.Millisecond))
	return nil
}

// goBuild runs go build -o out pkg in dir.
func goBuild(ctx context.Context, dir, out, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
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

// cpuGroups are the processes whose CPU a measurement reports, beside
// the benchmark process itself.
func (r *runner) cpuGroups(f *fleet) map[string][]int {
	g := map[string][]int{}
	if r.nats != nil {
		g["nats"] = []int{r.nats.pid()}
	}
	if f != nil {
		for _, w := range f.workers {
			g["workers"] = append(g["workers"], w.pid())
		}
	}
	return g
}

// connect opens a NATS connection for the benchmark's own use; ev, when
// not nil, counts its asynchronous errors and disconnects.
func (r *runner) connect(name string, ev *connEvents) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1)}
	if ev != nil {
		opts = append(opts,
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				if errors.Is(err, nats.ErrSlowConsumer) {
					ev.slow.Add(1)
				} else {
					ev.other.Add(1)
				}
			}),
			nats.DisconnectErrHandler(func(*nats.Conn, error) { ev.disconnects.Add(1) }))
	}
	return nats.Connect(r.natsURL, opts...)
}

// connEvents counts what went wrong on the producer's connections.
type connEvents struct {
	slow, other, disconnects atomic.Int64
}

func (e *connEvents) String() string {
	if e.slow.Load() == 0 && e.other.Load() == 0 && e.disconnects.Load() == 0 {
		return ""
	}
	return fmt.Sprintf("producer connections: %d slow-consumer errors, %d other errors, %d disconnects", e.slow.Load(), e.other.Load(), e.disconnects.Load())
}

// fleet is a topology (its own prefix), its worker processes and the
// producer's publishers.
type fleet struct {
	r       *runner
	name    string
	names   subjects.Names
	workers []*proc
	conns   []*nats.Conn
	pubs    []*publisher.Publisher
	js      jetstream.JetStream
	events  connEvents
}

// fleetSpec describes a fleet.
type fleetSpec struct {
	name     string
	workers  int
	upstream string            // base URL incl. /v1
	env      map[string]string // CHATFLEET_* for every worker
}

// startFleet starts spec.workers `chatfleet worker` processes on a fresh
// prefix and connects the producer. The first worker creates the
// topology; every worker gets the same topology settings.
func (r *runner) startFleet(ctx context.Context, spec fleetSpec) (_ *fleet, err error) {
	r.seq++
	prefix := fmt.Sprintf("bench%02d", r.seq)
	names, err := subjects.New(prefix)
	if err != nil {
		return nil, err
	}
	f := &fleet{r: r, name: spec.name, names: names}
	defer func() {
		if err != nil {
			f.close()
		}
	}()
	env := map[string]string{
		"CHATFLEET_NATS_URL":       r.natsURL,
		"CHATFLEET_PREFIX":         prefix,
		"CHATFLEET_HTTP_ADDR":      "",
		"CHATFLEET_LLM_BASE_URL":   spec.upstream,
		"CHATFLEET_LLM_API_KEY":    "bench",
		"CHATFLEET_LOG_FORMAT":     "json",
		"CHATFLEET_LOG_LEVEL":      "info",
		"CHATFLEET_QUEUE_LIMIT":    "1000000",
		"CHATFLEET_SHUTDOWN_GRACE": "5s",
	}
	maps.Copy(env, spec.env)
	maps.Copy(env, r.cfg.WorkerEnv)
	for i := range spec.workers {
		id := fmt.Sprintf("%s-w%d", prefix, i+1)
		wenv := []string{"CHATFLEET_WORKER_ID=" + id}
		for k, v := range env {
			wenv = append(wenv, k+"="+v)
		}
		if r.cfg.ProfileDir != "" {
			wenv = append(wenv, "CHATFLEET_BENCH_CPUPROFILE="+filepath.Join(r.cfg.ProfileDir, sanitizeFile(spec.name)+"-w"+strconv.Itoa(i+1)+".cpu.pprof"))
		}
		p, err := startProc(procSpec{name: sanitizeFile(spec.name) + "-" + id, bin: r.bin, args: []string{"worker"}, env: wenv, logDir: r.logDir, readyLine: `"worker started"`})
		if err != nil {
			return f, err
		}
		f.workers = append(f.workers, p)
		if i == 0 {
			// The first creates the topology; the others only check it.
			if err := p.waitReady(ctx, 30*time.Second); err != nil {
				return f, err
			}
		}
	}
	for _, p := range f.workers[1:] {
		if err := p.waitReady(ctx, 30*time.Second); err != nil {
			return f, err
		}
	}
	for i := range max(1, r.cfg.Sizes.Connections) {
		nc, err := r.connect(fmt.Sprintf("bench producer %d", i+1), &f.events)
		if err != nil {
			return f, err
		}
		f.conns = append(f.conns, nc)
		pub, err := publisher.New(nc, publisher.WithPrefix(prefix))
		if err != nil {
			return f, err
		}
		f.pubs = append(f.pubs, pub)
	}
	if f.js, err = jetstream.New(f.conns[0]); err != nil {
		return f, err
	}
	return f, nil
}

// close stops the workers, closes the producer and deletes the fleet's
// streams and buckets, so the next scenario starts from nothing.
func (f *fleet) close() {
	if e := f.events.String(); e != "" {
		f.r.rep.Notes = append(f.r.rep.Notes, f.name+": "+e)
	}
	for _, w := range f.workers {
		if err := w.stop(15 * time.Second); err != nil {
			f.r.progress("   worker %s: %v", w.name, err)
		}
	}
	if f.js != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		for _, s := range []string{f.names.JobsStream(), f.names.RepliesStream(), f.names.DeadLetterStream()} {
			_ = f.js.DeleteStream(ctx, s)
		}
		for _, b := range []string{f.names.InflightBucket(), f.names.CacheBucket(), f.names.CancelBucket()} {
			_ = f.js.DeleteKeyValue(ctx, b)
		}
		cancel()
	}
	for _, nc := range f.conns {
		nc.Close()
	}
}

// watchConsumers samples the number of consumers on the replies stream
// (the publisher's fallback readers and followers' generation readers)
// until stop is called, which returns the most seen.
func (f *fleet) watchConsumers(ctx context.Context) (stop func() int) {
	var most atomic.Int64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() { // owned by the caller: stop ends it
		defer close(finished)
		s, err := f.js.Stream(ctx, f.names.RepliesStream())
		if err != nil {
			return
		}
		for {
			if info, err := s.Info(ctx); err == nil && int64(info.State.Consumers) > most.Load() {
				most.Store(int64(info.State.Consumers))
			}
			select {
			case <-done:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	return func() int {
		close(done)
		<-finished
		return int(most.Load())
	}
}

// storedReplies is the number of messages in the replies stream.
func (f *fleet) storedReplies(ctx context.Context) uint64 {
	s, err := f.js.Stream(ctx, f.names.RepliesStream())
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// prompt returns a prompt unique to this run.
func (r *runner) prompt(kind string, i int) string {
	return fmt.Sprintf("bench %s %s %d", r.runID, kind, i)
}

// uniqueJobs returns a job function asking kind's i-th prompt.
func (r *runner) uniqueJobs(kind string) func(int) protocol.Job {
	return func(i int) protocol.Job { return userJob(r.prompt(kind, i)) }
}

// privateJobs are unique jobs with dedupe and cache off.
func (r *runner) privateJobs(kind string) func(int) protocol.Job {
	off := false
	return func(i int) protocol.Job {
		j := userJob(r.prompt(kind, i))
		j.Dedupe, j.Cache = &off, &off
		return j
	}
}

// perJob is CPU microseconds per job by process group.
func perJob(c CPU, jobs int) map[string]float64 {
	out := map[string]float64{}
	if jobs == 0 {
		return out
	}
	for k, v := range c.CPUS {
		out[k] = round1(v * 1e6 / float64(jobs))
	}
	out["total"] = round1(c.TotalS * 1e6 / float64(jobs))
	return out
}
