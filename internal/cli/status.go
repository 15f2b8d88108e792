package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/chatfleet/chatfleet/internal/config"
	"github.com/chatfleet/chatfleet/subjects"
	"github.com/chatfleet/chatfleet/topology"
	"github.com/chatfleet/chatfleet/worker"
)

// fleetStatus is what `chatfleet status` shows, and prints with --json.
type fleetStatus struct {
	Time        time.Time       `json:"time"`
	Prefix      string          `json:"prefix"`
	Queue       queueStatus     `json:"queue"`
	DeadLetters uint64          `json:"dead_letters"`
	Workers     []worker.Status `json:"workers"`
	Fleet       fleetTotals     `json:"fleet"`
	// Upstreams are the fleet's upstreams: limits, load and breakers.
	Upstreams []upstreamStatus `json:"upstreams"`
}

type queueStatus struct {
	Waiting     uint64 `json:"waiting"`     // jobs in the stream no worker has pulled yet
	AckPending  int    `json:"ack_pending"` // pulled, not yet acked
	Redelivered int    `json:"redelivered"` // delivered more than once, not yet acked
	Pulls       int    `json:"pulls"`       // pull requests waiting (idle capacity)
	// OldestWaitingS is the age in seconds of the oldest waiting job: the
	// first job after the last one the workers' consumer delivered (jobs
	// handed back for redelivery count as in flight, not here); 0 when
	// none waits.
	OldestWaitingS float64 `json:"oldest_waiting_s"`
	// OldestWaitingSince is when that job entered the stream.
	OldestWaitingSince *time.Time `json:"oldest_waiting_since,omitempty"`
}

type fleetTotals struct {
	Workers            int     `json:"workers"`
	Leading            int64   `json:"leading"` // unique generations in flight
	DedupeRatio        float64 `json:"dedupe_ratio"`
	CacheHitRatio      float64 `json:"cache_hit_ratio"`
	UpstreamErrorRatio float64 `json:"upstream_error_ratio"`
}

func runStatus(ctx context.Context, args []string, io IO) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(io.Err)
	asJSON := fs.Bool("json", false, "print one JSON object (per refresh with --watch)")
	watch := fs.Bool("watch", false, "refresh in place until interrupted")
	every := fs.Duration("interval", 2*time.Second, "refresh interval with --watch")
	wait := fs.Duration("wait", 500*time.Millisecond, "how long to collect workers' answers")
	fs.Usage = func() {
		fmt.Fprintln(io.Err, "Usage: chatfleet status [--json] [--watch] [--interval 2s] [--wait 500ms]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	if fs.NArg() != 0 || *every <= 0 || *wait <= 0 {
		fs.Usage()
		return ExitUsage
	}
	env, names, nc, code := connect(io, "status")
	if code != ExitOK {
		return code
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Fprintln(io.Err, "chatfleet status:", err)
		return ExitFailed
	}
	for {
		st, err := collectStatus(ctx, nc, js, env, names, *wait)
		if err != nil {
			fmt.Fprintln(io.Err, "chatfleet status:", err)
			return ExitFailed
		}
		if *watch && !*asJSON {
			fmt.Fprint(io.Out, "\033[H\033[2J") // clear the screen, cursor home
		}
		if *asJSON {
			err = json.NewEncoder(io.Out).Encode(st)
		} else {
			err = printStatus(st, io)
		}
		if err != nil || !*watch {
			return exitFor(err)
		}
		select {
		case <-ctx.Done():
			return ExitOK
		case <-time.After(*every):
		}
	}
}

func exitFor(err error) int {
	if err != nil {
		return ExitFailed
	}
	return ExitOK
}

// collectStatus reads the queue from JetStream and the workers from their
// micro-service stats, which every worker of this prefix answers.
func collectStatus(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, env config.Env, names subjects.Names, wait time.Duration) (*fleetStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st := &fleetStatus{Time: time.Now().UTC(), Prefix: names.Prefix()}
	jobs, err := js.Stream(ctx, names.JobsStream())
	if err != nil {
		return nil, fmt.Errorf("jobs stream %s: %w (%s)", names.JobsStream(), err, topologyHint)
	}
	if err := readQueueStatus(ctx, js, jobs, names, st); err != nil {
		return nil, err
	}
	if dlq, err := js.Stream(ctx, names.DeadLetterStream()); err == nil {
		st.DeadLetters = dlq.CachedInfo().State.Msgs
	}
	if st.Workers, err = workerStatuses(ctx, nc, names.Prefix(), wait); err != nil {
		return nil, err
	}
	st.Fleet = totals(st.Workers)
	if st.Upstreams, err = upstreamStatuses(ctx, js, env, names, st.Workers); err != nil {
		return nil, err
	}
	return st, nil
}

// workerStatuses asks every chatfleet worker for its stats ($SRV.STATS, as
// `nats micro stats` does) and keeps those of this prefix.
func workerStatuses(ctx context.Context, nc *nats.Conn, prefix string, wait time.Duration) ([]worker.Status, error) {
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest("$SRV.STATS."+worker.ServiceName, inbox, nil); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	out := []worker.Status{} // [] in JSON, never null
	for {
		msg, err := sub.NextMsgWithContext(ctx)
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders) {
			break // no worker (more) answered
		}
		if err != nil {
			return nil, err
		}
		var stats micro.Stats
		if json.Unmarshal(msg.Data, &stats) != nil {
			continue
		}
		for _, ep := range stats.Endpoints {
			var ws worker.Status
			if ep.Name == "status" && json.Unmarshal(ep.Data, &ws) == nil && ws.Prefix == prefix {
				out = append(out, ws)
			}
		}
	}
	slices.SortFunc(out, func(a, b worker.Status) int { return strings.Compare(a.Worker, b.Worker) })
	return out, nil
}

func totals(ws []worker.Status) fleetTotals {
	t := fleetTotals{Workers: len(ws)}
	var leaders, followers, cache, requests, calls, errs float64
	for _, w := range ws {
		t.Leading += w.Leading
		leaders += float64(w.Totals.Leaders)
		followers += float64(w.Totals.Followers)
		cache += float64(w.Totals.CacheHits)
		requests += float64(w.Totals.Requests)
		calls += float64(w.Upstreams.Calls)
		errs += float64(w.Upstreams.Errors)
	}
	t.DedupeRatio = ratio(followers, leaders+followers)
	t.CacheHitRatio = ratio(cache, requests)
	t.UpstreamErrorRatio = ratio(errs, calls)
	return t
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func printStatus(st *fleetStatus, io IO) error {
	f := st.Fleet
	fmt.Fprintf(io.Out, "chatfleet status · prefix %s · %s\n\n", st.Prefix, st.Time.Format(time.RFC3339))
	oldest := ""
	if st.Queue.OldestWaitingSince != nil {
		oldest = fmt.Sprintf(" (oldest %s)", (time.Duration(st.Queue.OldestWaitingS * float64(time.Second))).Round(time.Second))
	}
	fmt.Fprintf(io.Out, "queue    %d waiting%s · %d in flight · %d redelivered · %d idle pulls · %d dead letters\n",
		st.Queue.Waiting, oldest, st.Queue.AckPending, st.Queue.Redelivered, st.Queue.Pulls, st.DeadLetters)
	fmt.Fprintf(io.Out, "fleet    %d workers · %d generations in flight · dedupe %.1f%% · cache hits %.1f%% · upstream errors %.1f%%\n\n",
		f.Workers, f.Leading, 100*f.DedupeRatio, 100*f.CacheHitRatio, 100*f.UpstreamErrorRatio)
	if len(st.Workers) == 0 {
		_, err := fmt.Fprintln(io.Out, "no workers answered")
		return err
	}
	tw := tabwriter.NewWriter(io.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tUPTIME\tROUTING\tLEADER\tFOLLOWER\tCACHE\tREQUEST SLOTS\tWAITING SLOTS\tPARKED SLOTS\tLLM SLOTS\tFOLLOWER SLOTS\tBREAKER\tSTATE")
	for _, w := range st.Workers {
		state := "ready"
		if w.Draining {
			state = "draining"
		}
		slot := func(pool string) string { u := w.Slots[pool]; return fmt.Sprintf("%d/%d", u.Used, u.Total) }
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", w.Worker,
			(time.Duration(w.UptimeS) * time.Second).String(), w.InFlight["routing"], w.InFlight["leader"],
			w.InFlight["follower"], w.InFlight["cache"], slot("requests"), slot("waiting"), slot("parked"), slot("llm"), slot("followers"),
			w.Upstreams.Breaker, state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return printUpstreams(st.Upstreams, io)
}

// readQueueStatus fills st.Queue from the queue consumers (one per tenant and
// priority): Waiting counts the jobs no worker has pulled, those of queues
// whose consumer does not exist yet included, and the oldest of them.
func readQueueStatus(ctx context.Context, js jetstream.JetStream, jobs jetstream.Stream, names subjects.Names, st *fleetStatus) error {
	sum, err := topology.QueueTotals(ctx, js, names)
	if err != nil {
		return fmt.Errorf("%w (%s)", err, topologyHint)
	}
	st.Queue.Waiting, st.Queue.AckPending, st.Queue.Redelivered, st.Queue.Pulls = sum.NumPending, sum.NumAckPending, sum.NumRedelivered, sum.NumWaiting
	if st.Queue.Waiting == 0 {
		return nil
	}
	info, err := jobs.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		return fmt.Errorf("jobs per queue: %w", err)
	}
	for subject := range info.State.Subjects {
		first := uint64(1)
		if tenant, priority, err := names.ParseQueue(subject); err == nil {
			if c, err := jobs.Consumer(ctx, names.QueueConsumer(tenant, priority)); err == nil {
				first = c.CachedInfo().Delivered.Stream + 1 // the first job no worker has seen
			}
		}
		oldest, err := jobs.GetMsg(ctx, first, jetstream.WithGetMsgSubject(subject))
		switch {
		case err == nil:
			if since := oldest.Time.UTC(); st.Queue.OldestWaitingSince == nil || since.Before(*st.Queue.OldestWaitingSince) {
				st.Queue.OldestWaitingSince = &since
				st.Queue.OldestWaitingS = max(0, st.Time.Sub(since).Seconds())
			}
		case !errors.Is(err, jetstream.ErrMsgNotFound): // pulled since the count: none waits
			return fmt.Errorf("oldest waiting job: %w", err)
		}
	}
	return nil
}
