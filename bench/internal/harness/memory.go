package harness

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatfleet/chatfleet/protocol"
)

// MemoryResult is one memory measurement.
type MemoryResult struct {
	N              int        `json:"n"`
	Kind           string     `json:"kind"` // "followers" or "leaders"
	RSSBefore      int64      `json:"rss_before_bytes"`
	RSSHolding     int64      `json:"rss_holding_bytes"`
	BytesPerStream int64      `json:"bytes_per_stream"`
	Held           int        `json:"held"` // streams that had their first chunk when measured
	Load           LoadResult `json:"load"`
	Note           string     `json:"note,omitempty"`
}

// memory: one worker holds N streams, stalled after two tokens: N
// followers of one generation, then N leaders of distinct ones. RSS
// before (after a warm-up) and while holding; the difference per stream.
func (r *runner) memory(ctx context.Context) error {
	for _, kind := range []string{"followers", "leaders"} {
		for _, n := range r.cfg.Sizes.MemoryNs {
			res, err := r.memoryRun(ctx, n, kind)
			if err != nil {
				return err
			}
			r.rep.Memory = append(r.rep.Memory, res)
			r.progress("   %d %s: RSS %s → %s, %s per stream, errors %d %s", n, kind, mib(res.RSSBefore), mib(res.RSSHolding), kib(res.BytesPerStream), res.Load.Errors, res.Note)
		}
	}
	return nil
}

func (r *runner) memoryRun(ctx context.Context, n int, kind string) (MemoryResult, error) {
	g := newGate()
	defer g.open()
	up := stallingUpstream(g.ch)
	defer up.Close()
	env := heldStreamsEnv(n, kind == "leaders")
	f, err := r.startFleet(ctx, fleetSpec{name: fmt.Sprintf("memory-%d-%s", n, kind), workers: 1, upstream: up.URL(), env: env})
	if err != nil {
		return MemoryResult{}, err
	}
	defer f.close()
	pid := f.workers[0].pid()
	res := MemoryResult{N: n, Kind: kind}

	// Warm up every code path (leader, follower, cache), then let the
	// worker settle.
	sz := r.cfg.Sizes
	runLoad(ctx, f.pubs, loadSpec{n: sz.MemoryWarmup, concurrency: 64, job: func(i int) protocol.Job { return userJob(r.prompt("mem warm ", i%50)) }})
	time.Sleep(sz.MemorySettle)
	if res.RSSBefore, err = procRSS(pid); err != nil {
		return res, err
	}

	var firsts atomic.Int64
	held := make(chan struct{})
	var once sync.Once
	job := r.memoryJobs(kind, n)
	type out struct {
		recs []jobRec
		wall time.Duration
	}
	done := make(chan out, 1)
	go func() { // owned by memoryRun, which waits on done
		recs, wall := runLoad(ctx, f.pubs, loadSpec{n: n, concurrency: n, timeout: 5 * time.Minute, job: job,
			onFirst: func(int) {
				// Every stream has its first chunk: all are relaying.
				if firsts.Add(1) == int64(n) {
					once.Do(func() { close(held) })
				}
			}})
		done <- out{recs, wall}
	}()
	select {
	case <-held:
	case <-time.After(3 * time.Minute):
		res.Note = "not every stream had its first chunk"
	case o := <-done:
		g.open()
		res.Load = summarizeLoad(o.recs, o.wall)
		return res, fmt.Errorf("memory %s %d: the load ended before the streams were held: %s", kind, n, res.Load.FirstError)
	}
	res.RSSHolding = holdingRSS(pid, sz.MemorySettle)
	res.Held = int(firsts.Load())
	g.open()
	o := <-done
	res.Load = summarizeLoad(o.recs, o.wall)
	res.BytesPerStream = (res.RSSHolding - res.RSSBefore) / int64(n)
	return res, nil
}

// memoryJobs returns the jobs of a memory run: n asking the same prompt
// (followers of one generation), or n distinct ones (leaders).
func (r *runner) memoryJobs(kind string, n int) func(int) protocol.Job {
	if kind == "followers" {
		prompt := r.prompt("mem followers", n)
		return func(int) protocol.Job { return userJob(prompt) }
	}
	return func(i int) protocol.Job { return userJob(r.prompt("mem "+kind, i)) }
}

// holdingRSS lets a worker that holds its streams settle, then returns the
// largest of five readings of its RSS spread over settle (0 when none
// could be read).
func holdingRSS(pid int, settle time.Duration) int64 {
	time.Sleep(settle)
	var most int64
	for range 5 {
		if rss, err := procRSS(pid); err == nil && rss > most {
			most = rss
		}
		time.Sleep(settle / 5)
	}
	return most
}
