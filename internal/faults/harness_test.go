//go:build faults

package faults

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/manager"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/subjects"
	"github.com/chatfleet/chatfleet/topology"
	"github.com/chatfleet/chatfleet/worker"
)

// fleet is a chatfleet on NATS servers the test runs itself, so that it
// can restart or kill them: the test upstream, workers and a publisher,
// each on its own connection to urls. fleettest starts its own server,
// which these tests cannot restart.
type fleet struct {
	t        *testing.T
	urls     string
	topo     topology.Config
	names    subjects.Names
	upstream *llmtest.Server
	js       jetstream.JetStream // for checks, on a connection of its own
	links    links

	pub   *publisher.Publisher
	pubNC *nats.Conn

	workers   []*worker.Worker
	workerNCs []*nats.Conn // workers[i]'s connection
}

// options shape a fleet.
type options struct {
	llm     []llmtest.Option
	topo    topology.Config
	workers int
	// release, if set, is called when the test ends, before the workers
	// stop: it ends paused answers.
	release func()
	// ownPublisher: the test starts the publisher itself, with
	// startPublisher.
	ownPublisher bool
}

// newFleet starts the upstream, o.workers workers and a publisher against
// urls (comma-separated).
func newFleet(t *testing.T, urls string, o options) *fleet {
	t.Helper()
	f := &fleet{t: t, urls: urls, topo: o.topo, names: o.topo.WithDefaults().Names, links: newLinks()}
	f.upstream = llmtest.New(o.llm...)
	t.Cleanup(f.upstream.Close)
	js, err := jetstream.New(f.connect("checks"))
	if err != nil {
		t.Fatal(err)
	}
	f.js = js
	for range o.workers {
		f.startWorker()
	}
	if o.release != nil {
		t.Cleanup(o.release) // before the workers stop: cleanups run last-registered first
	}
	if !o.ownPublisher {
		f.startPublisher(urls, 500*time.Millisecond)
	}
	return f
}

// startPublisher starts the publisher on a connection to urls; a reply
// quiet for idleProbe checks the replies stream for events it missed.
func (f *fleet) startPublisher(urls string, idleProbe time.Duration) {
	f.t.Helper()
	f.pubNC = f.connectTo(urls, "publisher")
	pub, err := publisher.New(f.pubNC, publisher.WithIdleProbe(idleProbe))
	if err != nil {
		f.t.Fatal(err)
	}
	f.pub = pub
}

// connect opens a connection to the fleet's URLs named name that
// reconnects forever and reports its disconnects and reconnects to
// f.links.
func (f *fleet) connect(name string) *nats.Conn {
	f.t.Helper()
	return f.connectTo(f.urls, name)
}

func (f *fleet) connectTo(urls, name string) *nats.Conn {
	f.t.Helper()
	return natstest.Connect(f.t, urls, append(f.links.options(), nats.Name(name))...)
}

// startWorker starts a worker on its own connection, stopped when the
// test ends.
func (f *fleet) startWorker() *worker.Worker {
	f.t.Helper()
	id := fmt.Sprintf("w%d", len(f.workers)+1)
	nc := f.connect(id)
	w, err := worker.New(worker.Config{
		ID:       id,
		Topology: f.topo,
		// As many upstream streams as requests: tests pause every answer,
		// and a job must not wait for a slot a paused one holds.
		Manager:   manager.Config{DefaultModel: "test-model", MaxConcurrentLLMStreams: 64},
		LLM:       llm.Config{BaseURL: f.upstream.URL(), APIKey: "test-key"},
		FetchWait: 250 * time.Millisecond,
		Logger:    fleettest.Logger().With("worker", id),
	}, nc)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := w.Start(fleettest.Context(f.t, 30*time.Second)); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { fleettest.StopWorker(f.t, w) })
	f.workers = append(f.workers, w)
	f.workerNCs = append(f.workerNCs, nc)
	return w
}

// stopWorkers stops every worker gracefully. Tests call it before their
// final checks, so no event is stored after them, and before the servers
// are shut down (test cleanups run last-registered first, and a server
// restarted mid-test registers its shutdown after the workers').
func (f *fleet) stopWorkers() {
	for _, w := range f.workers {
		fleettest.StopWorker(f.t, w)
	}
}

// links counts the disconnects and reconnects of a fleet's connections,
// so a test waits for them instead of sleeping.
type links struct {
	mu                      sync.Mutex
	conns                   int
	disconnects, reconnects int
	changed                 chan struct{} // closed and replaced on every count
}

func newLinks() links { return links{changed: make(chan struct{})} }

func (l *links) options() []nats.Option {
	l.mu.Lock()
	l.conns++
	l.mu.Unlock()
	log := fleettest.Logger()
	return []nats.Option{
		nats.DisconnectErrHandler(func(*nats.Conn, error) { l.count(&l.disconnects) }),
		nats.ReconnectHandler(func(*nats.Conn) { l.count(&l.reconnects) }),
		// Faults make nats.go report errors (missed heartbeats, broken
		// pipes); it would print them to stderr.
		nats.ErrorHandler(func(nc *nats.Conn, _ *nats.Subscription, err error) {
			log.Debug("nats client error", "conn", nc.Opts.Name, "err", err)
		}),
	}
}

func (l *links) count(n *int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	*n++
	close(l.changed)
	l.changed = make(chan struct{})
}

// counts returns the connections opened, and their disconnects and
// reconnects so far.
func (l *links) counts() (conns, disconnects, reconnects int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conns, l.disconnects, l.reconnects
}

// wait blocks until cond holds for the counts.
func (l *links) wait(ctx context.Context, what string, cond func(conns, disconnects, reconnects int) bool) error {
	for {
		l.mu.Lock()
		ok, ch := cond(l.conns, l.disconnects, l.reconnects), l.changed
		l.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			c, d, r := l.counts()
			return fmt.Errorf("waiting for %s: %d connections, %d disconnects, %d reconnects: %w", what, c, d, r, ctx.Err())
		}
	}
}

// paused answers every call with llmtest's default answer, a token every
// `every`, but holds it after `after` tokens until release is called.
// Release is safe to call twice; pass it to the fleet (options.release) so
// a failed test's workers stop at once.
func paused(after int, every time.Duration) (script llmtest.Option, release func()) {
	ch := make(chan struct{})
	release = sync.OnceFunc(func() { close(ch) })
	return llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		rep := llmtest.DefaultReply(r)
		rep.Delay, rep.StallAfter, rep.Release = every, after, ch
		return rep
	}), release
}

// job is one submitted request, its reply read live in the background.
type job struct {
	prompt string
	reply  *publisher.Reply
	done   chan struct{} // closed when the reply ended

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every event and at the end
	events  []protocol.Event
	content string         // after resets
	tokens  int            // in content
	end     protocol.Event // the terminal event
	err     error
}

func userJob(id, prompt string) protocol.Job {
	return protocol.Job{ID: id, Messages: []protocol.Message{{Role: protocol.RoleUser, Content: protocol.TextContent(prompt)}}}
}

// submit submits a job and reads its reply in a goroutine the test owns
// (wait for done).
func (f *fleet) submit(ctx context.Context, id, prompt string) *job {
	f.t.Helper()
	r, err := f.pub.Submit(ctx, userJob(id, prompt))
	if err != nil {
		f.t.Fatalf("submit %s: %v", id, err)
	}
	j := &job{prompt: prompt, reply: r, done: make(chan struct{}), changed: make(chan struct{})}
	go j.read(ctx)
	return j
}

// read reads the reply live to its end, applying resets as
// publisher.Reply.Collect does.
func (j *job) read(ctx context.Context) {
	defer close(j.done)
	defer j.reply.Stop()
	for {
		ev, err := j.reply.Next(ctx)
		if !j.record(ev, err) {
			return
		}
	}
}

// record folds one event (or the error) into the job; false at the end.
func (j *job) record(ev protocol.Event, err error) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	close(j.changed)
	j.changed = make(chan struct{})
	if err != nil {
		j.err = err
		return false
	}
	j.events = append(j.events, ev)
	switch ev.Type {
	case protocol.EventChunk:
		j.content += ev.Content
		j.tokens = len(llmtest.SplitTokens(j.content))
	case protocol.EventReset:
		j.content, j.tokens = "", 0
	}
	if ev.Type.Terminal() {
		j.end = ev
		return false
	}
	return true
}

// waitTokens waits until every job's reply has carried n tokens (or
// ended).
func waitTokens(t *testing.T, ctx context.Context, jobs []*job, n int) {
	t.Helper()
	for _, j := range jobs {
		for {
			j.mu.Lock()
			ok, ch := j.tokens >= n || j.err != nil || j.end.Type != "", j.changed
			j.mu.Unlock()
			if ok {
				break
			}
			select {
			case <-ch:
			case <-ctx.Done():
				t.Fatalf("waiting for %d tokens of %s: %v; events so far: %s", n, j.reply.ID(), ctx.Err(), describe(j.eventsSoFar()))
			}
		}
	}
}

// waitDone waits until every job's reply has ended.
func waitDone(t *testing.T, ctx context.Context, jobs []*job) {
	t.Helper()
	for _, j := range jobs {
		select {
		case <-j.done:
		case <-ctx.Done():
			t.Fatalf("waiting for the end of %s: %v; events so far: %s", j.reply.ID(), ctx.Err(), describe(j.eventsSoFar()))
		}
	}
}

func (j *job) eventsSoFar() []protocol.Event {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.events)
}

func (j *job) lastSeq() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.events) == 0 {
		return 0
	}
	return j.events[len(j.events)-1].Seq
}

// waitStored waits until the replies stream holds every event the jobs'
// replies have carried so far; with the upstream paused, nothing of
// theirs is then in flight. The stream offers no signal; this polls.
func (f *fleet) waitStored(ctx context.Context, jobs []*job) error {
	for {
		// A request a cluster gets while a stream has no leader is never
		// answered: bound each one.
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		stored, err := f.storedReplies(cctx)
		cancel()
		missing := ""
		for _, j := range jobs {
			evs := stored[j.reply.ID()]
			if want := j.lastSeq(); len(evs) == 0 || evs[len(evs)-1].Seq < want {
				missing = fmt.Sprintf("%s: event %d not stored (last error %v)", j.reply.ID(), want, err)
				break
			}
		}
		if missing == "" && err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", missing, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// checkAnswers checks every job after the fault: the live reply ended with
// done and the complete answer for its prompt; read again from the
// replies stream (Attach) it says the same; and the stream holds each seq
// of the reply once, from 1, ending with its only terminal event.
func (f *fleet) checkAnswers(ctx context.Context, jobs []*job) {
	t := f.t
	t.Helper()
	want := map[string]string{} // by prompt
	for _, req := range f.upstream.Requests() {
		want[req.LastUserMessage()] = llmtest.Answer(req)
	}
	stored, err := f.storedReplies(ctx)
	if err != nil {
		t.Fatalf("read the replies stream: %v", err)
	}
	// Attach creates a consumer per reply, which a cluster takes a while
	// to place: a few at a time. The goroutines end before this returns.
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, j := range jobs {
		id := j.reply.ID()
		answer, ok := want[j.prompt]
		if !ok {
			t.Errorf("%s: the upstream never saw its prompt %q", id, j.prompt)
			continue
		}
		if j.err != nil || j.end.Type != protocol.EventDone || j.content != answer {
			t.Errorf("%s: live reply ended %q (err %v) with %q, want done with %q; events %s", id, j.end.Type, j.err, j.content, answer, describe(j.events))
		}

		checkStored(t, id, stored[id], protocol.EventDone)

		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			r, err := f.pub.Attach(ctx, protocol.DefaultTenant, id)
			if err != nil {
				t.Errorf("%s: attach: %v", id, err)
				return
			}
			defer r.Stop()
			a, err := r.Collect(ctx)
			if err != nil || a.Content != answer || a.FinishReason != "stop" {
				t.Errorf("%s: attached reply: %+v, %v; want %q", id, a, err, answer)
			}
		})
	}
}

// checkCancelled checks a job that was cancelled while it ran: its live
// reply and the replies stream end with cancelled, the stream holding each
// seq once and no other terminal event.
func (f *fleet) checkCancelled(ctx context.Context, j *job) {
	t := f.t
	t.Helper()
	id := j.reply.ID()
	if j.err != nil || j.end.Type != protocol.EventCancelled {
		t.Errorf("%s: live reply ended %q (err %v), want cancelled; events %s", id, j.end.Type, j.err, describe(j.events))
	}
	stored, err := f.storedReplies(ctx)
	if err != nil {
		t.Fatalf("read the replies stream: %v", err)
	}
	checkStored(t, id, stored[id], protocol.EventCancelled)
}

// checkStored checks the events of one reply as the replies stream holds
// them: seq 1, 2, … each once, and one terminal event, the last, of type
// end.
func checkStored(t *testing.T, id string, evs []protocol.Event, end protocol.EventType) {
	t.Helper()
	terminals, misnumbered := 0, 0
	for i, ev := range evs {
		if ev.Seq != uint64(i+1) {
			misnumbered++
		}
		if ev.Type.Terminal() {
			terminals++
		}
	}
	if terminals != 1 || misnumbered > 0 || evs[len(evs)-1].Type != end {
		t.Errorf("%s: the replies stream holds %d terminal events and %d events out of sequence, want seq 1, 2, … and one terminal event, %s, last: %s",
			id, terminals, misnumbered, end, describe(evs))
	}
}

// storedReplies returns the events the replies stream holds for each
// request, by request ID, in stream order (batches expanded): every message but the shared
// generations' (the subjects the stream stores replies under are the
// product's business; the event names its request).
func (f *fleet) storedReplies(ctx context.Context) (map[string][]protocol.Event, error) {
	cons, err := f.js.OrderedConsumer(ctx, f.names.RepliesStream(), jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, err
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, err
	}
	defer it.Stop()
	gens := strings.TrimSuffix(f.names.AllGens(), ">")
	out := map[string][]protocol.Event{}
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return out, err
		}
		if !strings.HasPrefix(msg.Subject(), gens) {
			// A live reply's message may hold a batch of events.
			evs, _, err := protocol.DecodeStored(msg.Data())
			if err != nil {
				return out, fmt.Errorf("undecodable message on %s: %w", msg.Subject(), err)
			}
			for _, ev := range evs {
				out[ev.ID] = append(out[ev.ID], ev)
			}
		}
		meta, err := msg.Metadata()
		if err != nil {
			return out, err
		}
		if meta.NumPending == 0 {
			return out, nil
		}
	}
}

// waitDrained waits until the jobs stream is empty and nothing is pending
// acknowledgement: every job was acked (or given up), none is stranded.
// Acks are asynchronous, so this polls.
func (f *fleet) waitDrained(ctx context.Context) error {
	names := f.names
	var msgs uint64
	var pending int
	for {
		// A request a cluster gets while the stream has no leader is never
		// answered: bound each one.
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		s, err := f.js.Stream(cctx, names.JobsStream())
		if err == nil {
			msgs = s.CachedInfo().State.Msgs
			var sum *jetstream.ConsumerInfo
			if sum, err = topology.QueueTotals(cctx, f.js, names); err == nil {
				pending = sum.NumAckPending
				if msgs == 0 && pending == 0 {
					cancel()
					return nil
				}
			}
		}
		cancel()
		select {
		case <-ctx.Done():
			return fmt.Errorf("jobs stream holds %d jobs, %d pending ack (last error %v): %w", msgs, pending, err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// callsByPrompt counts upstream calls per prompt.
func (f *fleet) callsByPrompt() map[string]int {
	out := map[string]int{}
	for _, req := range f.upstream.Requests() {
		out[req.LastUserMessage()]++
	}
	return out
}

// describe lists events compactly: seq, type, and content or role.
func describe(evs []protocol.Event) string {
	s := ""
	for _, ev := range evs {
		s += fmt.Sprintf("[%d %s", ev.Seq, ev.Type)
		switch {
		case ev.Content != "":
			s += fmt.Sprintf(" %q", ev.Content)
		case ev.Role != "":
			s += " " + string(ev.Role) + "@" + ev.Worker
		case ev.Error != nil:
			s += " " + ev.Error.Error()
		}
		s += "] "
	}
	return s
}

// hostPort returns the host:port of a nats:// URL.
func hostPort(t *testing.T, u string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return p.Host
}
