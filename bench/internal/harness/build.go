package harness

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"time"
)

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
	if _, found := r.redisServer(); r.cfg.Peer && found && (slices.Contains(r.cfg.Scenarios, "peer") || slices.Contains(r.cfg.Scenarios, "hotpath")) {
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
