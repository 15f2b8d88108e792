package harness

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatfleet/chatfleet/llm/llmtest"
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
	up := llmtest.New(llmtest.WithScript(func(req llmtest.Request) llmtest.Reply {
		if strings.Contains(req.LastUserMessage(), " warm ") {
			return llmtest.Reply{Tokens: tokens16}
		}
		return llmtest.Reply{Tokens: tokens16, StallAfter: 2, Release: g.ch}
	}))
	defer up.Close()
	env := map[string]string{
		"CHATFLEET_MAX_CONCURRENT_FOLLOWERS": strconv.Itoa(n + 64),
		"CHATFLEET_MAX_ACK_PENDING":          strconv.Itoa(max(20000, 2*n)),
		"CHATFLEET_LLM_IDLE_TIMEOUT":         "10m", // streams are held until all N are
	}
	if kind == "leaders" {
		env["CHATFLEET_MAX_CONCURRENT_REQUESTS"] = strconv.Itoa(n + 64)
		env["CHATFLEET_MAX_CONCURRENT_LLM_STREAMS"] = strconv.Itoa(n + 64)
	}
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
	job := func(i int) protocol.Job { return userJob(r.prompt("mem "+kind, i)) }
	if kind == "followers" {
		prompt := r.prompt("mem followers", n)
		job = func(int) protocol.Job { return userJob(prompt) }
	}
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
	time.Sleep(sz.MemorySettle)
	for range 5 {
		if rss, err := procRSS(pid); err == nil && rss > res.RSSHolding {
			res.RSSHolding = rss
		}
		time.Sleep(sz.MemorySettle / 5)
	}
	res.Held = int(firsts.Load())
	g.open()
	o := <-done
	res.Load = summarizeLoad(o.recs, o.wall)
	res.BytesPerStream = (res.RSSHolding - res.RSSBefore) / int64(n)
	return res, nil
}
