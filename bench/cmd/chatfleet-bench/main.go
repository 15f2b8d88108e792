// Command chatfleet-bench benchmarks chatfleet on this machine, side by
// side with raw NATS on the same server and an asynq + Redis pub/sub
// stack (when redis-server is installed): it builds chatfleet, starts
// NATS, worker processes and an in-process test upstream, runs every
// scenario, prints a table and writes JSON and PNG charts.
//
//	go run ./bench/cmd/chatfleet-bench --out bench/results/results.json --charts bench/results
//
// See BENCHMARKS.md for the scenarios and how to read the numbers.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/chatfleet/chatfleet/bench/internal/harness"
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		cfg       harness.Config
		scenarios string
		smoke     bool
		rounds    int
		env       multiFlag
	)
	flag.StringVar(&cfg.NATSURL, "nats", "", "use this NATS server (JetStream on) instead of starting one")
	flag.StringVar(&scenarios, "scenarios", "", "comma-separated subset of: "+strings.Join(harness.ScenarioNames, ",")+"; opt-in: "+strings.Join(harness.OptInScenarios, ","))
	flag.StringVar(&cfg.BeforeBinary, "before", "", "a previous build's chatfleet binary, measured beside this one by the hotpath scenario")
	flag.StringVar(&cfg.Binary, "binary", "", "run the workers with this chatfleet binary instead of building this tree's")
	flag.IntVar(&rounds, "hotpath-rounds", 0, "rounds of the hotpath scenario (default: 3; 1 with --smoke)")
	flag.BoolVar(&cfg.Peer, "peer", true, "run the asynq + Redis peer; skipped with a note when redis-server is not installed (apt-get install -y redis-server)")
	flag.StringVar(&cfg.RedisServer, "redis-server", "", "redis-server binary (default: from PATH)")
	flag.StringVar(&cfg.Out, "out", "", "write the JSON report here")
	flag.StringVar(&cfg.ChartsDir, "charts", "", "write PNG charts into this directory")
	flag.StringVar(&cfg.ProfileDir, "profile", "", "write CPU profiles of the workers, NATS and the benchmark into this directory")
	flag.StringVar(&cfg.WorkDir, "workdir", "", "scratch directory (default: a temporary one)")
	flag.BoolVar(&cfg.KeepWorkDir, "keep", false, "keep the temporary scratch directory (logs)")
	flag.BoolVar(&smoke, "smoke", false, "tiny sizes: checks that everything runs, measures nothing")
	flag.Var(&env, "worker-env", "CHATFLEET_X=value added to every worker's environment (repeatable)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "chatfleet-bench takes no arguments; see -h")
		return 2
	}
	cfg.Sizes = harness.DefaultSizes()
	if smoke {
		cfg.Sizes = harness.SmokeSizes()
	}
	if rounds > 0 {
		cfg.Sizes.HotpathRounds = rounds
	}
	if scenarios != "" {
		cfg.Scenarios = strings.Split(scenarios, ",")
	}
	if len(env) > 0 {
		cfg.WorkerEnv = map[string]string{}
		for _, kv := range env {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				fmt.Fprintf(os.Stderr, "--worker-env %q: want NAME=value\n", kv)
				return 2
			}
			cfg.WorkerEnv[k] = v
		}
	}
	cfg.Progress, cfg.Table = os.Stderr, os.Stdout
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := harness.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatfleet-bench:", err)
		return 1
	}
	if len(rep.Errors) > 0 {
		return 1
	}
	return 0
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
