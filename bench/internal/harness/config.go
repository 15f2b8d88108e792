package harness

import (
	"io"
	"time"
)

// Config configures a benchmark run. Each field's comment ends with its
// default.
type Config struct {
	// ModuleDir is the chatfleet module's root (where go.mod is). Defaults
	// to the nearest parent of the working directory holding chatfleet's
	// go.mod.
	ModuleDir string
	// WorkDir holds the binaries, the NATS data, logs and profiles.
	// Defaults to a temporary directory, removed at the end unless
	// KeepWorkDir.
	WorkDir string
	// KeepWorkDir keeps a temporary WorkDir (logs, data). Defaults to false.
	KeepWorkDir bool
	// NATSURL is a NATS server (with JetStream) to use. Defaults to ""
	// (start one: `chatfleet dev` with no workers, a separate process).
	NATSURL string
	// Binary is a chatfleet binary to run workers with. Defaults to ""
	// (build ./cmd/chatfleet into WorkDir).
	Binary string
	// BeforeBinary is a previous build's chatfleet binary: the hotpath
	// scenario measures it beside this one, interleaved, so a busy
	// machine's noise affects both. Defaults to "" (this build only).
	BeforeBinary string
	// Scenarios to run, by name (see ScenarioNames). Defaults to all.
	Scenarios []string
	// Sizes of every scenario. Defaults to DefaultSizes().
	Sizes Sizes
	// Peer runs the asynq + Redis peer stack when redis-server is
	// available. Defaults to false.
	Peer bool
	// RedisServer is the redis-server binary. Defaults to "redis-server"
	// in PATH.
	RedisServer string
	// WorkerEnv is added to every worker's environment, after the
	// scenario's own settings (CHATFLEET_*=…). Defaults to none.
	WorkerEnv map[string]string
	// Out is where the JSON report goes. Defaults to "" (none).
	Out string
	// ChartsDir is where the PNG charts go. Defaults to "" (none).
	ChartsDir string
	// ProfileDir, when set, receives CPU profiles: one per worker process
	// and scenario (workers then run a build with a profiling wrapper) and
	// one of the benchmark process. Defaults to "" (no profiling).
	ProfileDir string
	// Progress receives progress lines. Defaults to io.Discard.
	Progress io.Writer
	// Table receives the human-readable table. Defaults to io.Discard.
	Table io.Writer
}

// ScenarioNames are the scenarios, in the order they run.
var ScenarioNames = []string{"baselines", "throughput", "latency", "herd", "cache", "scaling", "globalcap", "memory", "large", "gateway", "queues", "peer"}

// OptInScenarios run only when named: they compare builds and take long.
var OptInScenarios = []string{"hotpath"}

// Sizes sizes the scenarios.
type Sizes struct {
	// Connections is how many NATS connections the producer's publishers
	// use, round robin.
	Connections int

	// Baselines.
	JetStreamMsgs int // raw JetStream messages published and consumed
	ReqReplyN     int // core NATS request/reply round trips

	// Throughput: unique jobs, instant upstream.
	ThroughputJobs        int
	ThroughputWarmup      int
	ThroughputConcurrency int   // jobs in flight at the producer
	ThroughputWorkers     []int // worker processes, one run each
	ThroughputNoMerge     bool  // also run 1 worker with CHATFLEET_CHUNK_WINDOW=0
	ThroughputGOGC        int   // also run 1 worker with this GOGC (0: not)

	// Latency: the stamping upstream, instant, then paced.
	UpstreamDirectN   int           // direct calls to the upstream, for its own TTFC
	LatencyLowJobs    int           // one job at a time
	LatencyRate       float64       // moderate load, jobs/s (open loop)
	LatencyDuration   time.Duration // of the moderate load
	LatencyPacedRate  float64       // paced-token load, jobs/s
	LatencyPacedJobs  int           // paced-token jobs
	LatencyPacedDelay time.Duration // between tokens

	// Herd: K identical concurrent jobs.
	HerdKs          []int
	HerdWorkers     int
	HerdNoDedupeMax int // largest K run with dedupe off

	// Cache hits.
	CacheJobs        int
	CacheConcurrency int

	// Scaling: slow upstream, more workers.
	ScalingWorkers       []int
	ScalingJobsPerWorker int
	ScalingDelay         time.Duration // per answer
	ScalingLLMStreams    int           // per worker
	// ScalingWindows: chunk windows to run the scaling steps with too,
	// besides the default (fewer, larger chunk events cost less CPU).
	ScalingWindows []time.Duration
	// Global cap: the scaling upstream, a fleet-wide cap of GlobalCap
	// streams, GlobalCapJobs jobs on each of GlobalCapWorkers workers.
	GlobalCapWorkers []int
	GlobalCap        int
	GlobalCapJobs    int

	// Memory: streams held by one worker.
	MemoryNs     []int
	MemoryWarmup int           // jobs run before the "before" RSS
	MemorySettle time.Duration // waited before each RSS reading

	// Large answer: one answer of LargeAnswerMB MiB in LargeDeltaBytes
	// deltas, streamed as fast as the socket takes it.
	LargeAnswerMB   int
	LargeDeltaBytes int

	// Gateway: `chatfleet gateway` in front of one worker, instant
	// upstream, against the same jobs published directly.
	GatewayLatencyN    int   // streamed requests one at a time (and as many direct jobs)
	GatewayJobs        int   // requests per throughput run
	GatewayWarmup      int   // requests before each throughput run (and, up to 50, before the latency run)
	GatewayConcurrency []int // HTTP clients (jobs in flight when direct), one run each

	// Queues: priorities and fair share, one worker, a slow upstream.
	QueuesBacklog    int           // jobs queued before the measured ones
	QueuesMeasured   int           // jobs measured per case, submitted at once
	QueuesDelay      time.Duration // per answer
	QueuesLLMStreams int           // the worker's upstream slots (and request slots)

	// Peer.
	PeerJobs        int
	PeerWorkers     []int
	PeerLatencyJobs int
	PeerIdle        time.Duration // idle CPU measurement

	// Hotpath: this build against BeforeBinary, interleaved.
	HotpathRounds      int           // rounds, each measuring every build once
	HotpathJobs        int           // unique jobs per throughput run
	HotpathConcurrency int           // jobs in flight at the producer
	HotpathWorkers     []int         // worker processes of the paced runs
	HotpathDelay       time.Duration // between the paced upstream's tokens
	HotpathLowJobs     int           // one-at-a-time jobs for time to first chunk
}

// DefaultSizes are the sizes of a full run (a few minutes on 2 cores).
func DefaultSizes() Sizes {
	return Sizes{
		Connections:           4,
		JetStreamMsgs:         200_000,
		ReqReplyN:             20_000,
		ThroughputJobs:        20_000,
		ThroughputWarmup:      500,
		ThroughputConcurrency: 256,
		ThroughputWorkers:     []int{1, 2},
		ThroughputNoMerge:     true,
		ThroughputGOGC:        400,
		UpstreamDirectN:       1000,
		LatencyLowJobs:        1000,
		LatencyRate:           500,
		LatencyDuration:       10 * time.Second,
		LatencyPacedRate:      50,
		LatencyPacedJobs:      500,
		LatencyPacedDelay:     10 * time.Millisecond,
		HerdKs:                []int{100, 1000, 10_000},
		HerdWorkers:           2,
		HerdNoDedupeMax:       10_000,
		CacheJobs:             20_000,
		CacheConcurrency:      256,
		ScalingWorkers:        []int{1, 2, 4},
		ScalingJobsPerWorker:  2000,
		ScalingDelay:          100 * time.Millisecond,
		ScalingLLMStreams:     16,
		ScalingWindows:        []time.Duration{25 * time.Millisecond},
		GlobalCapWorkers:      []int{1, 2, 4},
		GlobalCap:             8,
		GlobalCapJobs:         1200,
		MemoryNs:              []int{1000, 10_000},
		MemoryWarmup:          200,
		MemorySettle:          time.Second,
		LargeAnswerMB:         50,
		LargeDeltaBytes:       1024,
		GatewayLatencyN:       1000,
		GatewayJobs:           10_000,
		GatewayWarmup:         500,
		GatewayConcurrency:    []int{64, 256},
		QueuesBacklog:         5000,
		QueuesMeasured:        20,
		QueuesDelay:           20 * time.Millisecond,
		QueuesLLMStreams:      16,
		PeerJobs:              20_000,
		PeerWorkers:           []int{1, 2},
		PeerLatencyJobs:       300,
		PeerIdle:              5 * time.Second,
		HotpathRounds:         3,
		HotpathJobs:           4000,
		HotpathConcurrency:    256,
		HotpathWorkers:        []int{1, 2},
		HotpathDelay:          6 * time.Millisecond,
		HotpathLowJobs:        500,
	}
}

// SmokeSizes are tiny sizes that exercise every scenario in seconds.
func SmokeSizes() Sizes {
	return Sizes{
		Connections:           2,
		JetStreamMsgs:         2000,
		ReqReplyN:             200,
		ThroughputJobs:        20,
		ThroughputWarmup:      5,
		ThroughputConcurrency: 8,
		ThroughputWorkers:     []int{1},
		UpstreamDirectN:       10,
		LatencyLowJobs:        10,
		LatencyRate:           50,
		LatencyDuration:       400 * time.Millisecond,
		LatencyPacedRate:      20,
		LatencyPacedJobs:      5,
		LatencyPacedDelay:     10 * time.Millisecond,
		HerdKs:                []int{10},
		HerdWorkers:           1,
		HerdNoDedupeMax:       10,
		CacheJobs:             20,
		CacheConcurrency:      8,
		ScalingWorkers:        []int{1},
		ScalingJobsPerWorker:  20,
		ScalingDelay:          20 * time.Millisecond,
		ScalingLLMStreams:     16,
		ScalingWindows:        []time.Duration{25 * time.Millisecond},
		GlobalCapWorkers:      []int{1, 2},
		GlobalCap:             2,
		GlobalCapJobs:         20,
		MemoryNs:              []int{20},
		MemoryWarmup:          20,
		MemorySettle:          100 * time.Millisecond,
		LargeAnswerMB:         2,
		LargeDeltaBytes:       1024,
		GatewayLatencyN:       3,
		GatewayJobs:           6,
		GatewayWarmup:         2,
		GatewayConcurrency:    []int{3},
		QueuesBacklog:         50,
		QueuesMeasured:        4,
		QueuesDelay:           5 * time.Millisecond,
		QueuesLLMStreams:      4,
		PeerJobs:              20,
		PeerWorkers:           []int{1},
		PeerLatencyJobs:       2,
		PeerIdle:              500 * time.Millisecond,
		HotpathRounds:         1,
		HotpathJobs:           20,
		HotpathConcurrency:    8,
		HotpathWorkers:        []int{1},
		HotpathDelay:          2 * time.Millisecond,
		HotpathLowJobs:        5,
	}
}
