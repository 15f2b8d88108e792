package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/nats-io/nats.go"

	"github.com/chatfleet/chatfleet/internal/config"
	"github.com/chatfleet/chatfleet/internal/natsserver"
	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/subjects"
	"github.com/chatfleet/chatfleet/topology"
	"github.com/chatfleet/chatfleet/worker"
)

// runDev runs everything on one machine with no set-up: an embedded NATS
// server with JetStream that other processes can join, the topology, the
// in-process workers, and a simulated model when no upstream is
// configured.
func runDev(ctx context.Context, args []string, io IO) int {
	env, logger, code := loadServerEnv(io, "dev", args)
	if code != ExitOK {
		return code
	}
	names, err := subjects.New(env.Prefix)
	if err != nil {
		fmt.Fprintln(io.Err, "chatfleet dev:", err)
		return ExitUsage
	}
	if err := env.CheckModel(); err != nil {
		logger.Error("dev not started", "err", err)
		return ExitUsage
	}
	ns, err := natsserver.Start(natsserver.Config{
		Listen:   env.DevListen,
		StoreDir: filepath.Join(env.DevDataDir, "nats"),
		Name:     "chatfleet-dev",
	})
	if err != nil {
		logger.Error("cannot start the embedded NATS server", "listen", env.DevListen, "err", err, inUse(err, "CHATFLEET_DEV_LISTEN"))
		return ExitFailed
	}
	defer ns.Shutdown()

	// The topology comes first, whatever the number of workers: producers
	// can submit as soon as dev is up.
	admin, err := nats.Connect(ns.ClientURL(), nats.Name("chatfleet dev"))
	if err != nil {
		logger.Error("cannot connect to the embedded NATS server", "err", err)
		return ExitFailed
	}
	_, err = ensureTopology(ctx, env, names, admin)
	admin.Close()
	if errors.Is(err, topology.ErrMismatch) {
		// Most likely an earlier dev run's settings, kept in its data.
		err = fmt.Errorf("%w; or remove %s (CHATFLEET_DEV_DATA_DIR) to start afresh", err, env.DevDataDir)
	}
	if err != nil {
		logger.Error("cannot create the topology", "err", err)
		return ExitFailed
	}

	llmCfg := env.LLM()
	simulated := !env.UpstreamConfigured()
	if simulated {
		sim, err := llmtest.Listen(env.DevModelListen, llmtest.WithTokens(env.DevTokens),
			llmtest.WithDelay(env.DevTokenDelay, env.DevTokenDelay))
		if err != nil {
			logger.Error("cannot start the simulated model", "listen", env.DevModelListen, "err", err, inUse(err, "CHATFLEET_DEV_MODEL_LISTEN"))
			return ExitFailed
		}
		defer sim.Close()
		llmCfg = llm.Config{BaseURL: sim.URL()}
		logger.Warn("SIMULATED MODEL: no upstream is configured (set CHATFLEET_LLM_BASE_URL or OPENAI_API_KEY); " +
			"answers come from chatfleet's built-in simulated model, not an LLM")
	}

	// Workers stop before their connections close, and both before the
	// NATS server shuts down (deferred above).
	var (
		workers []*worker.Worker
		conns   []*nats.Conn
	)
	defer func() {
		if len(workers) > 0 {
			stopWorkers(logger, env.ShutdownGrace, workers...)
		}
		for _, nc := range conns {
			nc.Close()
		}
	}()
	for i := range env.DevWorkers {
		nc, err := nats.Connect(ns.ClientURL(), nats.Name(fmt.Sprintf("chatfleet dev worker %d", i+1)), nats.MaxReconnects(-1))
		if err != nil {
			logger.Error("cannot connect a worker", "err", err)
			return ExitFailed
		}
		conns = append(conns, nc)
		cfg := env.Worker(llmCfg, logger)
		if cfg.ID == "" || env.DevWorkers > 1 {
			cfg.ID = fmt.Sprintf("dev-%d", i+1)
		}
		if i > 0 {
			cfg.HTTPAddr = "" // one health endpoint is enough in dev mode
		}
		w, tel, code := startWorker(ctx, env, logger, cfg, nc)
		if code != ExitOK {
			return code
		}
		defer shutdownTelemetry(tel)
		workers = append(workers, w)
	}
	logger.Info("chatfleet dev is up", "nats", ns.ClientURL(), "workers", len(workers), "data", env.DevDataDir)
	fmt.Fprint(io.Err, devBanner(env, ns.ClientURL(), llmCfg.BaseURL, simulated))
	<-ctx.Done()
	code = stopWorkers(logger, env.ShutdownGrace, workers...)
	workers = nil // stopped: the deferred stop has nothing left to do
	return code
}

// inUse returns a log attribute naming the variable to change when err is
// "address already in use", and an empty one (which logs nothing)
// otherwise.
func inUse(err error, variable string) slog.Attr {
	if errors.Is(err, syscall.EADDRINUSE) {
		return slog.String("fix", "the address is taken: set "+variable+" to a free host:port")
	}
	return slog.Attr{}
}

// devBanner tells the user, with the ports dev actually uses, how to ask
// and how to start another worker against this dev server: configured as
// dev's workers are (every topology setting that differs from its
// default, the default model), on the same upstream. The upstream's API
// key is never printed: the command says to add it.
func devBanner(env config.Env, natsURL, modelURL string, simulated bool) string {
	self := selfCommand()
	var join []string // what a process needs to join this dev server
	if natsURL != config.Default("CHATFLEET_NATS_URL") {
		join = append(join, "CHATFLEET_NATS_URL="+natsURL)
	}
	if env.Prefix != subjects.DefaultPrefix {
		join = append(join, "CHATFLEET_PREFIX="+env.Prefix)
	}
	worker := append([]string{}, join...)
	worker = append(worker, env.NonDefault(append(config.TopologyVariables(), "CHATFLEET_MODEL")...)...)
	if addr := nextPort(env.HTTPAddr); addr != "" {
		worker = append(worker, "CHATFLEET_HTTP_ADDR="+addr)
	}
	upstream := "the same upstream"
	var add []string // what the user must add to the command
	switch {
	case simulated:
		worker = append(worker, "CHATFLEET_LLM_BASE_URL="+modelURL)
		upstream = "the simulated model at " + modelURL
	case env.LLMBaseURL != "":
		base := config.RedactURL(env.LLMBaseURL)
		worker = append(worker, "CHATFLEET_LLM_BASE_URL="+base)
		upstream += " at " + base
		if base != env.LLMBaseURL {
			add = append(add, "the base URL's credentials in place of xxxxx")
		}
	}
	if !simulated && env.LLMAPIKey != "" {
		add = append(add, "your CHATFLEET_LLM_API_KEY / OPENAI_API_KEY")
	}
	for i, kv := range worker {
		name, value, _ := strings.Cut(kv, "=")
		worker[i] = name + "=" + shellWord(value) // a quoted name would be no assignment
	}
	plus := ""
	if len(add) > 0 {
		plus = ", plus " + strings.Join(add, " and ")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nchatfleet dev: NATS at %s. In another terminal:\n", natsURL)
	fmt.Fprintf(&b, "  %s ask \"hello\"\n", strings.Join(append(join, self), " "))
	fmt.Fprintf(&b, "Another worker on %s%s:\n", upstream, plus)
	fmt.Fprintf(&b, "  %s worker\n", strings.Join(append(worker, self), " "))
	fmt.Fprintf(&b, "Ctrl-C stops.\n\n")
	return b.String()
}

// shellWord quotes s for a POSIX shell unless it needs no quotes.
func shellWord(s string) string {
	if strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.,:/=@%+") == "" && s != "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// nextPort returns addr with its port plus one, for a second process's
// health endpoint; "" when addr is empty (none served) or has no numeric
// port.
func nextPort(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p >= 65535 {
		return ""
	}
	return net.JoinHostPort(host, strconv.Itoa(p+1))
}

// selfCommand is how the user runs this program: the binary's path when
// it is an installed or built chatfleet, `go run ./cmd/chatfleet` when it
// was built by go run (or is not chatfleet at all, as in tests).
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil || filepath.Base(exe) != "chatfleet" || strings.Contains(exe, string(filepath.Separator)+"go-build") {
		return "go run ./cmd/chatfleet"
	}
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, exe); err == nil && !strings.HasPrefix(rel, "..") {
			return "." + string(filepath.Separator) + rel
		}
	}
	return exe
}
