package worker

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/topology"
)

// priorityWeights are the shares of pulls each priority gets while every
// priority has jobs waiting, highest first: of ten pulls, six go to high,
// three to normal, one to low. A priority without jobs waiting gives its
// share to the others, so low-priority jobs always progress (no
// starvation) and high ones wait for at most a few pulls.
var priorityWeights = [numPriorities]int{6, 3, 1}

// numPriorities is len(protocol.Priorities), as a constant.
const numPriorities = 3

// queue is one tenant's jobs of one priority.
type queue struct {
	tenant string
	rank   int // index in protocol.Priorities
}

func (q queue) priority() string { return string(protocol.Priorities[q.rank]) }

// pick is how many jobs to pull from one queue this round.
type pick struct {
	queue
	n     int
	marks uint64 // the queue's marks when planned: see drop
}

// queues is the fetch loop's view of which queues have jobs, and the
// order it pulls from them: priorities by smooth weighted round robin
// (priorityWeights), tenants of a priority by plain round robin. So a
// tenant with 5,000 jobs waiting and one with 20 share the worker's pulls
// half and half, and the second one's jobs do not wait behind the first
// one's.
//
// It learns of jobs from the jobs stream's announcements (QueuedJobs,
// headers only), and by reading the stream's subjects (rescan) at start,
// when idle for the rescan interval, and every rescan interval while busy:
// that finds jobs handed back for another delivery, which are not
// announced, and announcements lost to a reconnect.
type queues struct {
	top    *topology.Topology
	rescan time.Duration

	mu        sync.Mutex
	active    [numPriorities][]string      // tenants with jobs, per priority, in round-robin order
	next      [numPriorities]int           // the round robin's position per priority
	member    map[queue]uint64             // active queues: how often each was marked since it became active
	credit    [numPriorities]int           // smooth weighted round robin's state
	consumers map[queue]jetstream.Consumer // only the fetch loop uses it
	lastScan  time.Time                    // only the fetch loop uses it
	last      *queue                       // the queue pulled from last; only the fetch loop uses it

	bell chan struct{} // rung (capacity 1) when a queue becomes active
	sub  *nats.Subscription
}

func newQueues(top *topology.Topology, rescan time.Duration) *queues {
	return &queues{top: top, rescan: rescan, member: map[queue]uint64{}, consumers: map[queue]jetstream.Consumer{},
		bell: make(chan struct{}, 1)}
}

// listen subscribes to the stream's announcements; stop undoes it.
func (qs *queues) listen(nc *nats.Conn) error {
	names := qs.top.Config.Names
	sub, err := nc.Subscribe(names.QueuedJobs(), func(msg *nats.Msg) { // owned by the NATS connection; stop unsubscribes
		if subject, ok := names.ParseQueued(msg.Subject); ok {
			qs.mark(subject)
		}
	})
	qs.sub = sub
	return err
}

func (qs *queues) stop() {
	if qs.sub != nil {
		_ = qs.sub.Unsubscribe()
	}
}

// mark notes that the queue of a job stored on subject has work. A
// subject that is no queue's (junk a producer published) is ignored.
func (qs *queues) mark(subject string) {
	tenant, priority, err := qs.top.Config.Names.ParseQueue(subject)
	if err != nil {
		return
	}
	q := queue{tenant: tenant, rank: protocol.Priority(priority).Rank()}
	qs.mu.Lock()
	if qs.member[q] == 0 {
		qs.active[q.rank] = append(qs.active[q.rank], tenant)
	}
	qs.member[q]++
	qs.mu.Unlock()
	select {
	case qs.bell <- struct{}{}:
	default:
	}
}

// drop notes that p's queue had fewer jobs than p asked for: it is
// inactive until the next announcement or rescan finds work in it. A queue
// marked again since p was planned stays active: the announcement may be
// of a job stored after p's pull had looked, and dropping it would leave
// that job waiting for the next rescan.
func (qs *queues) drop(p pick) {
	q := p.queue
	qs.mu.Lock()
	defer qs.mu.Unlock()
	if qs.member[q] != p.marks {
		return
	}
	delete(qs.member, q)
	list := qs.active[q.rank]
	for i, t := range list {
		if t == q.tenant {
			qs.active[q.rank] = append(list[:i], list[i+1:]...)
			if qs.next[q.rank] > i {
				qs.next[q.rank]--
			}
			break
		}
	}
}

// plan shares n pulls among the active queues.
func (qs *queues) plan(n int) []pick {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	var picks []pick
	at := map[queue]int{}
	for range n {
		rank := qs.nextRank()
		if rank < 0 {
			break
		}
		list := qs.active[rank]
		i := qs.next[rank] % len(list)
		qs.next[rank] = i + 1
		q := queue{tenant: list[i], rank: rank}
		if j, ok := at[q]; ok {
			picks[j].n++
			continue
		}
		at[q] = len(picks)
		picks = append(picks, pick{queue: q, n: 1, marks: qs.member[q]})
	}
	return picks
}

// nextRank is the smooth weighted round robin (as nginx balances
// upstreams) over the priorities with active queues; -1 for none.
func (qs *queues) nextRank() int {
	best, total := -1, 0
	for rank, w := range priorityWeights {
		if len(qs.active[rank]) == 0 {
			continue
		}
		qs.credit[rank] += w
		total += w
		if best < 0 || qs.credit[rank] > qs.credit[best] {
			best = rank
		}
	}
	if best >= 0 {
		qs.credit[best] -= total
	}
	return best
}

// scan marks every queue the stream holds jobs for, if the rescan
// interval has passed since the last scan. The counts include jobs being
// worked on, so a queue may turn out empty at its first pull.
func (qs *queues) scan(ctx context.Context, force bool) error {
	if !force && time.Since(qs.lastScan) < qs.rescan {
		return nil
	}
	info, err := qs.top.Jobs.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		return err
	}
	qs.lastScan = time.Now()
	for subject, n := range info.State.Subjects {
		if n > 0 {
			qs.mark(subject)
		}
	}
	return nil
}

// consumer returns q's consumer, creating it the first time.
func (qs *queues) consumer(ctx context.Context, q queue) (jetstream.Consumer, error) {
	if c, ok := qs.consumers[q]; ok {
		return c, nil
	}
	c, err := qs.top.Queue(ctx, q.tenant, q.priority())
	if err != nil {
		return nil, err
	}
	qs.consumers[q] = c
	return c, nil
}

// fetch pulls up to p.n jobs from p's queue without waiting for more. A
// consumer the server deleted (idle too long) is created again next time.
func (qs *queues) fetch(ctx context.Context, p pick) (jetstream.MessageBatch, error) {
	c, err := qs.consumer(ctx, p.queue)
	if err != nil {
		return nil, err
	}
	batch, err := c.FetchNoWait(p.n)
	if err != nil {
		qs.forget(p.queue)
	}
	return batch, err
}

// forget drops q's consumer handle after a failed pull, so the next one
// looks it up (or creates it) again; nor is q the queue to stand by on
// until a pull from it succeeds.
func (qs *queues) forget(q queue) {
	delete(qs.consumers, q)
	if qs.last != nil && *qs.last == q {
		qs.last = nil
	}
}

// pulled notes a pull from q that did not fail, jobs or none.
func (qs *queues) pulled(q queue) { qs.last = &q }

// lastPulled is the queue pulled from last, if that pull did not fail:
// the queue to stand by on (standing.go).
func (qs *queues) lastPulled() (queue, bool) {
	if qs.last == nil {
		return queue{}, false
	}
	return *qs.last, true
}

// wait waits until a queue becomes active, standing is closed (a
// standing pull ended) or the rescan interval passes; false when ctx
// ends.
func (qs *queues) wait(ctx context.Context, standing <-chan struct{}) bool {
	t := time.NewTimer(qs.rescan)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-qs.bell:
	case <-standing:
	case <-t.C:
	}
	return true
}
