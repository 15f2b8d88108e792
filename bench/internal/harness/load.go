package harness

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
)

// jobRec is what the producer saw of one job, on its own clock.
type jobRec struct {
	submit time.Time // before Submit
	first  time.Time // first chunk event
	done   time.Time // terminal event
	role   protocol.Role
	worker string
	events int
	chunks int
	term   protocol.EventType
	err    error
	gains  []time.Duration   // per stamped token: upstream write → producer receipt
	timed  *protocol.Timings // the done event's: from the job's arrival in the stream
}

// loadSpec is one load: n jobs, closed loop (concurrency jobs in flight)
// or open loop (rate jobs per second, at most concurrency in flight).
type loadSpec struct {
	n           int
	concurrency int
	rate        float64
	job         func(i int) protocol.Job
	onMeta      func(i int, role protocol.Role) // called on each meta event
	onFirst     func(i int)                     // called on each job's first chunk
	stamps      bool                            // parse stamped tokens
	timeout     time.Duration                   // per job; defaults to defaultJobTimeout
}

// defaultJobTimeout bounds a job of a load whose spec sets no timeout.
const defaultJobTimeout = 2 * time.Minute

// runLoad runs spec with the publishers, round robin, and returns a record
// per job and the wall time from the first submit to the last terminal
// event.
func runLoad(ctx context.Context, pubs []*publisher.Publisher, spec loadSpec) ([]jobRec, time.Duration) {
	return drive(ctx, spec, func(ctx context.Context, i int, rec *jobRec) {
		runJob(ctx, pubs[i%len(pubs)], spec, i, rec)
	})
}

// drive runs one(i) for i in [0, spec.n), closed loop (spec.concurrency
// at a time) or open loop (spec.rate per second, at most
// spec.concurrency at a time), and returns the records one filled and the
// wall time from the start to the last terminal event.
func drive(ctx context.Context, spec loadSpec, one func(ctx context.Context, i int, rec *jobRec)) ([]jobRec, time.Duration) {
	recs := make([]jobRec, spec.n)
	start := time.Now()
	var wg sync.WaitGroup
	if spec.rate > 0 {
		sem := make(chan struct{}, max(1, spec.concurrency))
		for i := range spec.n {
			at := start.Add(time.Duration(float64(i) / spec.rate * float64(time.Second)))
			if d := time.Until(at); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
				}
			}
			if ctx.Err() != nil {
				recs[i].err = ctx.Err()
				continue
			}
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				one(ctx, i, &recs[i])
			}()
		}
	} else {
		var next atomic.Int64
		for range max(1, spec.concurrency) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= spec.n {
						return
					}
					one(ctx, i, &recs[i])
				}
			}()
		}
	}
	wg.Wait()
	var last time.Time
	for i := range recs {
		if recs[i].done.After(last) {
			last = recs[i].done
		}
	}
	if last.IsZero() {
		last = time.Now()
	}
	return recs, last.Sub(start)
}

// runJob submits job i and reads its reply to the end.
func runJob(ctx context.Context, pub *publisher.Publisher, spec loadSpec, i int, rec *jobRec) {
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(spec.timeout, defaultJobTimeout))
	defer cancel()
	rec.submit = time.Now()
	reply, err := pub.Submit(ctx, spec.job(i))
	if err != nil {
		rec.err = fmt.Errorf("submit: %w", err)
		return
	}
	defer reply.Stop()
	for {
		ev, err := reply.Next(ctx)
		now := time.Now()
		if err != nil {
			rec.err = fmt.Errorf("after %d events: %w", rec.events, err)
			return
		}
		rec.events++
		switch ev.Type {
		case protocol.EventMeta:
			rec.role, rec.worker = ev.Role, ev.Worker
			if spec.onMeta != nil {
				spec.onMeta(i, ev.Role)
			}
		case protocol.EventChunk:
			if rec.first.IsZero() {
				rec.first = now
				if spec.onFirst != nil {
					spec.onFirst(i)
				}
			}
			rec.chunks++
			if spec.stamps {
				rec.gains = parseStamps(ev.Content, now, rec.gains)
			}
		}
		if ev.Type.Terminal() {
			rec.done, rec.term, rec.timed = now, ev.Type, ev.Timings
			if ev.Type != protocol.EventDone {
				if ev.Error != nil {
					rec.err = fmt.Errorf("%s event: %s", ev.Type, ev.Error.Error())
				} else {
					rec.err = fmt.Errorf("%s event", ev.Type)
				}
			}
			return
		}
	}
}

// LoadResult summarises a load at the producer.
type LoadResult struct {
	Jobs       int     `json:"jobs"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	WallS      float64 `json:"wall_s"`
	JobsPerS   float64 `json:"jobs_per_s"`
	TTFC       Dist    `json:"ttfc"` // submit → first chunk
	Done       Dist    `json:"done"` // submit → done
	// The worker's timings from the done events (from the job's arrival
	// in the jobs stream): until pulled, until the first chunk was
	// published, until done.
	WorkerQueue  Dist           `json:"worker_queue"`
	WorkerTTFT   Dist           `json:"worker_ttft"`
	WorkerTotal  Dist           `json:"worker_total"`
	Roles        map[string]int `json:"roles"`          // meta roles seen
	EventsPerJob float64        `json:"events_per_job"` // reply events per job (meta, chunks, done)
	ChunksPerJob float64        `json:"chunks_per_job"`
}

func summarizeLoad(recs []jobRec, wall time.Duration) LoadResult {
	res := LoadResult{Jobs: len(recs), WallS: round3(wall.Seconds()), Roles: map[string]int{}}
	var ttfc, done, wq, wt, wtot []time.Duration
	events, chunks := 0, 0
	for i := range recs {
		r := &recs[i]
		if r.err != nil {
			res.Errors++
			if res.FirstError == "" {
				res.FirstError = r.err.Error()
			}
		}
		if r.role != "" {
			res.Roles[string(r.role)]++
		}
		if !r.first.IsZero() {
			ttfc = append(ttfc, r.first.Sub(r.submit))
		}
		if r.term == protocol.EventDone {
			done = append(done, r.done.Sub(r.submit))
		}
		if t := r.timed; t != nil {
			wq = append(wq, fromMS(t.QueueMS))
			wt = append(wt, fromMS(t.TTFTMS))
			wtot = append(wtot, fromMS(t.TotalMS))
		}
		events += r.events
		chunks += r.chunks
	}
	res.TTFC, res.Done = summarize(ttfc), summarize(done)
	res.WorkerQueue, res.WorkerTTFT, res.WorkerTotal = summarize(wq), summarize(wt), summarize(wtot)
	if len(recs) > 0 {
		res.EventsPerJob = round3(float64(events) / float64(len(recs)))
		res.ChunksPerJob = round3(float64(chunks) / float64(len(recs)))
	}
	if wall > 0 {
		res.JobsPerS = round1(float64(len(done)) / wall.Seconds())
	}
	return res
}

// userJob is a job asking prompt, with the benchmark's model.
func userJob(prompt string) protocol.Job {
	return protocol.Job{
		Model:    "bench-model",
		Messages: []protocol.Message{{Role: protocol.RoleUser, Content: protocol.TextContent(prompt)}},
	}
}

func fromMS(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

// prompt returns a prompt unique to this run.
func (r *runner) prompt(kind string, i int) string {
	return fmt.Sprintf("bench %s %s %d", r.runID, kind, i)
}

// uniqueJobs returns a job function asking kind's i-th prompt.
func (r *runner) uniqueJobs(kind string) func(int) protocol.Job {
	return func(i int) protocol.Job { return userJob(r.prompt(kind, i)) }
}

// privateJobs are unique jobs with dedupe and cache off.
func (r *runner) privateJobs(kind string) func(int) protocol.Job {
	off := false
	return func(i int) protocol.Job {
		j := userJob(r.prompt(kind, i))
		j.Dedupe, j.Cache = &off, &off
		return j
	}
}
