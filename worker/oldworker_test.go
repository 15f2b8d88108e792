package worker_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/topology"
)

// oldVersion is the last commit before priorities: its workers know no
// `priority` field and forward unknown fields upstream, and they share one
// consumer (the older layout).
const oldVersion = "a35fab6f03cf12dea72928e8f5d708db9fe81f4a"

// previousVersion is the last commit before live replies are stored in
// batches: its workers store every event on its own and read a stored
// message as one event.
const previousVersion = "3e9102c93959ba4aa5bd75290c3d9d15527674d8"

// oldBuilds are the older versions' binaries, each built once for every
// test of the package that needs it; TestMain removes their directories.
var oldBuilds struct {
	mu     sync.Mutex
	builds map[string]*oldBuild
}

type oldBuild struct {
	once sync.Once
	dir  string
	bin  string
	skip string // why it cannot be built here
}

// buildOldWorker builds chatfleet at oldVersion from this repository's
// history, once; the test is skipped where that is impossible (no git, a
// shallow clone, no module cache to build offline).
func buildOldWorker(t *testing.T) string { return buildVersion(t, oldVersion) }

// buildVersion builds chatfleet at version, as buildOldWorker does.
func buildVersion(t *testing.T, version string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds an older chatfleet: skipped with -short")
	}
	oldBuilds.mu.Lock()
	if oldBuilds.builds == nil {
		oldBuilds.builds = map[string]*oldBuild{}
	}
	b := oldBuilds.builds[version]
	if b == nil {
		b = &oldBuild{}
		oldBuilds.builds[version] = b
	}
	oldBuilds.mu.Unlock()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "chatfleet-old-")
		if err != nil {
			b.skip = err.Error()
			return
		}
		b.dir = dir
		b.bin, b.skip = buildAt(dir, version)
	})
	if b.skip != "" {
		t.Skip(b.skip)
	}
	return b.bin
}

// removeOldBuild removes what buildVersion built.
func removeOldBuild() {
	for _, b := range oldBuilds.builds {
		if b.dir != "" {
			_ = os.RemoveAll(b.dir)
		}
	}
}

// buildAt extracts version into dir and builds it there; skip says why
// it could not.
func buildAt(dir, version string) (bin, skip string) {
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "", "no git repository: " + err.Error()
	}
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		return "", err.Error()
	}
	archive := exec.Command("git", "-C", strings.TrimSpace(string(root)), "archive", "--format=tar", version)
	untar := exec.Command("tar", "-x", "-C", src)
	if untar.Stdin, err = archive.StdoutPipe(); err != nil {
		return "", err.Error()
	}
	if err := untar.Start(); err != nil {
		return "", "tar: " + err.Error()
	}
	var stderr strings.Builder
	archive.Stderr = &stderr
	if err := archive.Run(); err != nil {
		_ = untar.Wait()
		return "", "git archive " + version + ": " + err.Error() + " " + stderr.String()
	}
	if err := untar.Wait(); err != nil {
		return "", "tar: " + err.Error()
	}
	bin = filepath.Join(dir, "chatfleet-old")
	build := exec.Command("go", "build", "-o", bin, "./cmd/chatfleet")
	build.Dir = src
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off")
	if out, err := build.CombinedOutput(); err != nil {
		return "", "cannot build the older version offline: " + err.Error() + "\n" + string(out)
	}
	return bin, ""
}

// startOldWorker runs `chatfleet worker` of the older version against f,
// with extraEnv added to its environment.
func startOldWorker(t *testing.T, f *fleettest.Fleet, bin, id string, extraEnv ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "worker")
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.Env = append(os.Environ(), "CHATFLEET_NATS_URL="+f.NATS.ClientURL(), "CHATFLEET_LLM_BASE_URL="+f.LLM.URL(),
		"CHATFLEET_WORKER_ID="+id, "CHATFLEET_HTTP_ADDR=", "CHATFLEET_DEFAULT_MODEL=test-model")
	cmd.Env = append(cmd.Env, extraEnv...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("old worker %s:\n%s", id, logs.String())
		}
	})
	fleettest.Poll(t, fleettest.Context(t, 30*time.Second), "the old worker started", func() bool {
		return strings.Contains(logs.String(), "worker started")
	})
	return cmd
}

// TestOldWorkerNeverForwardsPriority: a worker of the version before
// priorities (built from this repository's history) serves a fleet; a
// producer of this version submits high- and low-priority jobs. They are
// answered by the old worker as normal jobs and the upstream never sees a
// `priority` field — which that worker would forward, had it been in the
// body. After the migration the old worker gets nothing, a new worker
// serves the next high job, and still no request upstream carries it.
func TestOldWorkerNeverForwardsPriority(t *testing.T) {
	bin := buildOldWorker(t)
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	startOldWorker(t, f, bin, "old")
	ctx := fleettest.Context(t, time.Minute)
	for _, p := range []protocol.Priority{protocol.PriorityHigh, protocol.PriorityLow} {
		job := userJob("old fleet, " + string(p))
		job.Priority = p
		r, err := f.Pub.Submit(ctx, job)
		if err != nil {
			t.Fatal(err)
		}
		ans, err := r.Collect(ctx)
		if err != nil {
			t.Fatalf("%s job on the old fleet: %v", p, err)
		}
		if ans.Worker != "old" {
			t.Errorf("%s job answered by %q, want the old worker", p, ans.Worker)
		}
	}

	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	mig, err := topology.PlanMigration(ctx, js, f.Topology)
	if err != nil {
		t.Fatal(err)
	}
	if err := mig.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	w := f.StartWorker(withModel)
	job := userJob("migrated fleet, high")
	job.Priority = protocol.PriorityHigh
	ans, err := f.Pub.Complete(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	if ans.Worker != w.ID() {
		t.Errorf("after the migration the job was answered by %q, want the new worker %s", ans.Worker, w.ID())
	}
	// Three jobs, three calls at least: a loaded machine may add a retry,
	// which must not carry the priority either.
	reqs := f.LLM.Requests()
	if len(reqs) < 3 {
		t.Fatalf("upstream requests %d, want 3", len(reqs))
	}
	for _, req := range reqs {
		if _, ok := req.JSON()["priority"]; ok {
			t.Errorf("an upstream request carries the priority: %s", req.Body)
		}
	}
}
