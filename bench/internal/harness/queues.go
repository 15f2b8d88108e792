package harness

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
)

// QueuesResult is the queues scenario: how long jobs wait in the queue
// (the worker's queue time: from the job's arrival in the stream until a
// worker pulls it) behind a backlog, by priority and by tenant.
type QueuesResult struct {
	Workers    int         `json:"workers"`
	LLMStreams int         `json:"llm_streams_per_worker"`
	DelayMS    float64     `json:"upstream_ms_per_answer"`
	Backlog    int         `json:"backlog"`  // jobs queued before the measured ones
	Measured   int         `json:"measured"` // jobs measured per case
	Cases      []QueueCase `json:"cases"`
}

// QueueCase is one case: the measured jobs' queue wait and end-to-end
// time.
type QueueCase struct {
	Name   string `json:"name"`
	Queue  Dist   `json:"queue"` // worker_queue of the measured jobs
	Done   Dist   `json:"done"`  // submit → done of the measured jobs
	Errors int    `json:"errors"`
}

// queues: one worker, an upstream taking QueuesDelay per answer. Cases:
// the measured jobs on an idle fleet; high-priority jobs behind a backlog
// of low-priority ones (priority inversion if they waited for it);
// normal jobs behind a backlog of the same tenant's normal jobs (what
// every job got before priorities: first in, first out); tenant B's jobs
// submitted at once while tenant A has a backlog (fair share), with B's
// wait on an idle fleet the reference.
func (r *runner) queues(ctx context.Context) error {
	sz := r.cfg.Sizes
	res := &QueuesResult{Workers: 1, LLMStreams: sz.QueuesLLMStreams, DelayMS: msf(sz.QueuesDelay), Backlog: sz.QueuesBacklog, Measured: sz.QueuesMeasured}
	cases := []struct {
		name     string
		backlog  func(int) protocol.Job // nil: idle fleet
		measured func(int) protocol.Job
	}{
		{"idle fleet, tenant b, normal", nil, r.queueJobs("idle", "b", "")},
		{"behind a low backlog: high", r.queueJobs("lowlog", "a", protocol.PriorityLow), r.queueJobs("high", "a", protocol.PriorityHigh)},
		{"behind a normal backlog of the same tenant: normal (FIFO)", r.queueJobs("fifolog", "a", ""), r.queueJobs("fifo", "a", "")},
		{"tenant b while tenant a has a backlog (fair share)", r.queueJobs("alog", "a", ""), r.queueJobs("fair", "b", "")},
	}
	for _, c := range cases {
		qc, err := r.queueCase(ctx, c.name, c.backlog, c.measured)
		if err != nil {
			return err
		}
		res.Cases = append(res.Cases, qc)
		r.progress("   %s: queue wait p50 %.1f ms, p99 %.1f ms (done p50 %.1f ms), errors %d", c.name, qc.Queue.P50, qc.Queue.P99, qc.Done.P50, qc.Errors)
	}
	r.rep.Queues = res
	return nil
}

// queueJobs returns unique jobs of tenant at priority p.
func (r *runner) queueJobs(kind, tenant string, p protocol.Priority) func(int) protocol.Job {
	return func(i int) protocol.Job {
		j := userJob(r.prompt("queues-"+kind, i))
		j.Tenant, j.Priority = tenant, p
		return j
	}
}

// queueCase starts a fleet, queues the backlog (without waiting for it),
// then submits the measured jobs at once and waits for them; the backlog
// is left behind when the fleet stops.
func (r *runner) queueCase(ctx context.Context, name string, backlog, measured func(int) protocol.Job) (QueueCase, error) {
	sz := r.cfg.Sizes
	up := delayedUpstream(sz.QueuesDelay)
	defer up.Close()
	f, err := r.startFleet(ctx, fleetSpec{name: "queues", workers: 1, upstream: up.URL(),
		env: map[string]string{"CHATFLEET_MAX_CONCURRENT_LLM_STREAMS": strconv.Itoa(sz.QueuesLLMStreams),
			"CHATFLEET_MAX_CONCURRENT_REQUESTS": strconv.Itoa(sz.QueuesLLMStreams),
			"CHATFLEET_QUEUE_LIMIT":             strconv.Itoa(2 * (sz.QueuesBacklog + sz.QueuesMeasured))}})
	if err != nil {
		return QueueCase{}, err
	}
	defer f.close()
	if backlog != nil {
		if err := submitOnly(ctx, f.pubs, sz.QueuesBacklog, backlog); err != nil {
			return QueueCase{}, fmt.Errorf("%s: backlog: %w", name, err)
		}
	}
	recs, _ := runLoad(ctx, f.pubs, loadSpec{n: sz.QueuesMeasured, concurrency: sz.QueuesMeasured, job: measured})
	load := summarizeLoad(recs, time.Second)
	return QueueCase{Name: name, Queue: load.WorkerQueue, Done: load.Done, Errors: load.Errors}, nil
}

// submitOnly submits n jobs without reading their replies.
func submitOnly(ctx context.Context, pubs []*publisher.Publisher, n int, job func(int) protocol.Job) error {
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	next := make(chan int)
	for w := range 32 {
		wg.Add(1)
		go func() { // owned by submitOnly: it waits for them
			defer wg.Done()
			for i := range next {
				r, err := pubs[(w+i)%len(pubs)].Submit(ctx, job(i))
				if err != nil {
					once.Do(func() { first = err })
					continue
				}
				r.Stop()
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}
