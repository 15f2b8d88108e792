package harness

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
)

// HerdResult is one thundering herd.
type HerdResult struct {
	K             int        `json:"k"`
	Dedupe        bool       `json:"dedupe"`
	Workers       int        `json:"workers"`
	UpstreamCalls int        `json:"upstream_calls"`
	Load          LoadResult `json:"load"`
	// AcceptS is the time from the first submit until every job had its
	// meta event (all joined; then the gate opened).
	AcceptS float64 `json:"accept_s"`
	// Lag is each job's first chunk minus the reference's: the leader's
	// with dedupe on (followers only), the earliest with dedupe off.
	Lag    Dist   `json:"lag"`
	LagRef string `json:"lag_ref"`
	// AfterGate is each job's first chunk minus the gate's opening.
	AfterGate Dist `json:"after_gate"`
	// ReplyConsumers is the most consumers seen on the replies stream:
	// producers that fell back from the live subject to the stream, and
	// remote followers reading a generation.
	ReplyConsumers int    `json:"reply_consumers_max"`
	ProducerConns  string `json:"producer_conns,omitempty"` // slow consumers, disconnects
	Note           string `json:"note,omitempty"`
}

// herd: K identical jobs at once. The upstream holds its stream before
// the first token until every job has been accepted (has its meta event),
// so the herd is fully concurrent however long submitting K jobs takes;
// then it sends the answer. With dedupe off every job is its own leader:
// the gate waits for K upstream calls as well.
func (r *runner) herd(ctx context.Context) error {
	sz := r.cfg.Sizes
	for _, dedupe := range []bool{true, false} {
		for _, k := range sz.HerdKs {
			if !dedupe && k > sz.HerdNoDedupeMax {
				r.rep.Herd = append(r.rep.Herd, HerdResult{K: k, Dedupe: false, Workers: sz.HerdWorkers,
					Note: fmt.Sprintf("skipped: above HerdNoDedupeMax %d", sz.HerdNoDedupeMax)})
				continue
			}
			res, err := r.herdRun(ctx, k, dedupe)
			if err != nil {
				return err
			}
			r.rep.Herd = append(r.rep.Herd, res)
			r.progress("   K=%d dedupe=%v: %d upstream calls, lag p50 %.2f p99 %.2f max %.2f ms, errors %d %s", k, dedupe, res.UpstreamCalls, res.Lag.P50, res.Lag.P99, res.Lag.Max, res.Load.Errors, res.Note)
		}
	}
	return nil
}

func (r *runner) herdRun(ctx context.Context, k int, dedupe bool) (HerdResult, error) {
	sz := r.cfg.Sizes
	g := newGate()
	defer g.open()
	up := gatedUpstream(g.ch, -1)
	defer up.Close()
	// With dedupe off every job leads.
	env := heldStreamsEnv(k, !dedupe)
	name := fmt.Sprintf("herd-%d-dedupe-%v", k, dedupe)
	f, err := r.startFleet(ctx, fleetSpec{name: name, workers: sz.HerdWorkers, upstream: up.URL(), env: env})
	if err != nil {
		return HerdResult{}, err
	}
	defer f.close()

	res := HerdResult{K: k, Dedupe: dedupe, Workers: sz.HerdWorkers, LagRef: "leader"}
	if !dedupe {
		res.LagRef = "first"
	}
	var metas atomic.Int64
	allIn := make(chan struct{})
	var once sync.Once
	start := time.Now()
	var opened time.Time
	go func() { // owned by herdRun: ends when the gate opens
		res.Note = waitHerd(ctx, up, allIn, k, dedupe)
		opened = time.Now()
		g.open()
	}()
	prompt := r.prompt(name, 0)
	no := false
	stopWatch := f.watchConsumers(ctx)
	recs, wall := runLoad(ctx, f.pubs, loadSpec{n: k, concurrency: k, timeout: 5 * time.Minute,
		job: func(int) protocol.Job {
			j := userJob(prompt)
			if !dedupe {
				j.Dedupe = &no
			}
			return j
		},
		onMeta: func(int, protocol.Role) {
			if metas.Add(1) == int64(k) {
				once.Do(func() { close(allIn) })
			}
		}})
	<-g.ch
	res.ReplyConsumers = stopWatch()
	res.ProducerConns = f.events.String()
	res.AcceptS = round3(opened.Sub(start).Seconds())
	res.Load = summarizeLoad(recs, wall)
	res.UpstreamCalls = up.Calls()
	var found bool
	res.Lag, res.AfterGate, found = herdLags(recs, opened, dedupe)
	if dedupe && !found && res.Note == "" {
		res.Note = "no job reported role leader"
	}
	return res, nil
}

// waitHerd waits, before the gate opens, until every one of the k jobs
// was accepted (allIn is closed) or two minutes passed, and with dedupe
// off until the upstream has all k calls as well (or another minute
// passed). It returns a note saying why it stopped waiting early, or "".
func waitHerd(ctx context.Context, up *llmtest.Server, allIn <-chan struct{}, k int, dedupe bool) (note string) {
	select {
	case <-allIn:
	case <-time.After(2 * time.Minute):
		note = "gate opened by timeout: not every job was accepted"
	case <-ctx.Done():
	}
	if !dedupe {
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		if err := up.WaitCalls(wctx, k); err != nil {
			note = fmt.Sprintf("gate opened with %d of %d upstream calls", up.Calls(), k)
		}
		cancel()
	}
	return note
}

// herdLags returns, over the jobs that had a first chunk, the lag of each
// first chunk behind the reference's (the leader's with dedupe, which
// itself is left out; the earliest without) and the time from the gate's
// opening to each; found reports whether there was a reference.
func herdLags(recs []jobRec, opened time.Time, dedupe bool) (lag, afterGate Dist, found bool) {
	var ref time.Time
	for i := range recs {
		rec := &recs[i]
		if rec.first.IsZero() {
			continue
		}
		if dedupe && rec.role == protocol.RoleLeader {
			ref = rec.first
		}
		if !dedupe && (ref.IsZero() || rec.first.Before(ref)) {
			ref = rec.first
		}
	}
	var lags, after []time.Duration
	for i := range recs {
		rec := &recs[i]
		if rec.first.IsZero() {
			continue
		}
		after = append(after, rec.first.Sub(opened))
		if ref.IsZero() || (dedupe && rec.role == protocol.RoleLeader) {
			continue
		}
		lags = append(lags, rec.first.Sub(ref))
	}
	return summarize(lags), summarize(after), !ref.IsZero()
}
