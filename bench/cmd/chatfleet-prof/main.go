// Command chatfleet-prof is the chatfleet command with a CPU profile
// around it, for the benchmark's --profile: when CHATFLEET_BENCH_CPUPROFILE
// names a file, the whole run (say `chatfleet-prof worker`, until SIGTERM)
// is profiled into it, and a heap profile is written beside it
// (.heap.pprof) at the end. Otherwise it is exactly `chatfleet`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/chatfleet/chatfleet/internal/cli"
)

func main() {
	os.Exit(run())
}

func run() int {
	path := os.Getenv("CHATFLEET_BENCH_CPUPROFILE")
	if path != "" {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "chatfleet-prof:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "chatfleet-prof:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
		defer writeHeap(strings.TrimSuffix(path, ".cpu.pprof") + ".heap.pprof")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cli.Run(ctx, os.Args[1:], cli.IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
}

func writeHeap(path string) {
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	_ = pprof.WriteHeapProfile(f)
}
