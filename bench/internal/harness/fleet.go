package harness

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/subjects"
)

// cpuGroups are the processes whose CPU a measurement reports, beside
// the benchmark process itself.
func (r *runner) cpuGroups(f *fleet) map[string][]int {
	g := map[string][]int{}
	if r.nats != nil {
		g["nats"] = []int{r.nats.pid()}
	}
	if f != nil {
		for _, w := range f.workers {
			g["workers"] = append(g["workers"], w.pid())
		}
	}
	return g
}

// connect opens a NATS connection for the benchmark's own use; ev, when
// not nil, counts its asynchronous errors and disconnects.
func (r *runner) connect(name string, ev *connEvents) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1)}
	if ev != nil {
		opts = append(opts,
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				if errors.Is(err, nats.ErrSlowConsumer) {
					ev.slow.Add(1)
				} else {
					ev.other.Add(1)
				}
			}),
			nats.DisconnectErrHandler(func(*nats.Conn, error) { ev.disconnects.Add(1) }))
	}
	return nats.Connect(r.natsURL, opts...)
}

// connEvents counts what went wrong on the producer's connections.
type connEvents struct {
	slow, other, disconnects atomic.Int64
}

func (e *connEvents) String() string {
	if e.slow.Load() == 0 && e.other.Load() == 0 && e.disconnects.Load() == 0 {
		return ""
	}
	return fmt.Sprintf("producer connections: %d slow-consumer errors, %d other errors, %d disconnects", e.slow.Load(), e.other.Load(), e.disconnects.Load())
}

// fleet is a topology (its own prefix), its worker processes and the
// producer's publishers.
type fleet struct {
	r       *runner
	name    string
	names   subjects.Names
	workers []*proc
	conns   []*nats.Conn
	pubs    []*publisher.Publisher
	js      jetstream.JetStream
	events  connEvents
}

// fleetSpec describes a fleet.
type fleetSpec struct {
	name     string
	workers  int
	upstream string            // base URL incl. /v1
	env      map[string]string // CHATFLEET_* for every worker
	bin      string            // the chatfleet binary; "" is this build's
}

// startFleet starts spec.workers `chatfleet worker` processes on a fresh
// prefix and connects the producer. The first worker creates the
// topology; every worker gets the same topology settings.
func (r *runner) startFleet(ctx context.Context, spec fleetSpec) (_ *fleet, err error) {
	r.seq++
	prefix := fmt.Sprintf("bench%02d", r.seq)
	names, err := subjects.New(prefix)
	if err != nil {
		return nil, err
	}
	f := &fleet{r: r, name: spec.name, names: names}
	defer func() {
		if err != nil {
			f.close()
		}
	}()
	env := r.fleetEnv(prefix, spec)
	for i := range spec.workers {
		id := fmt.Sprintf("%s-w%d", prefix, i+1)
		wenv := []string{"CHATFLEET_WORKER_ID=" + id}
		for k, v := range env {
			wenv = append(wenv, k+"="+v)
		}
		if r.cfg.ProfileDir != "" {
			wenv = append(wenv, "CHATFLEET_BENCH_CPUPROFILE="+filepath.Join(r.cfg.ProfileDir, sanitizeFile(spec.name)+"-w"+strconv.Itoa(i+1)+".cpu.pprof"))
		}
		bin := r.bin
		if spec.bin != "" {
			bin = spec.bin
		}
		p, err := startProc(procSpec{name: sanitizeFile(spec.name) + "-" + id, bin: bin, args: []string{"worker"}, env: wenv, logDir: r.logDir, readyLine: `"worker started"`})
		if err != nil {
			return f, err
		}
		f.workers = append(f.workers, p)
		if i == 0 {
			// The first creates the topology; the others only check it.
			if err := p.waitReady(ctx, 30*time.Second); err != nil {
				return f, err
			}
		}
	}
	for _, p := range f.workers[1:] {
		if err := p.waitReady(ctx, 30*time.Second); err != nil {
			return f, err
		}
	}
	return f, f.connectProducer(prefix)
}

// fleetEnv is the CHATFLEET_* settings of every worker of a fleet on
// prefix: the benchmark's defaults, then spec's, then Config.WorkerEnv.
func (r *runner) fleetEnv(prefix string, spec fleetSpec) map[string]string {
	env := map[string]string{
		"CHATFLEET_NATS_URL":       r.natsURL,
		"CHATFLEET_PREFIX":         prefix,
		"CHATFLEET_HTTP_ADDR":      "",
		"CHATFLEET_LLM_BASE_URL":   spec.upstream,
		"CHATFLEET_LLM_API_KEY":    "bench",
		"CHATFLEET_LOG_FORMAT":     "json",
		"CHATFLEET_LOG_LEVEL":      "info",
		"CHATFLEET_QUEUE_LIMIT":    "1000000",
		"CHATFLEET_SHUTDOWN_GRACE": "5s",
	}
	maps.Copy(env, spec.env)
	maps.Copy(env, r.cfg.WorkerEnv)
	return env
}

// connectProducer opens the producer's connections (Sizes.Connections, at
// least one), a publisher on prefix for each, and JetStream on the first.
func (f *fleet) connectProducer(prefix string) error {
	for i := range max(1, f.r.cfg.Sizes.Connections) {
		nc, err := f.r.connect(fmt.Sprintf("bench producer %d", i+1), &f.events)
		if err != nil {
			return err
		}
		f.conns = append(f.conns, nc)
		pub, err := publisher.New(nc, publisher.WithPrefix(prefix))
		if err != nil {
			return err
		}
		f.pubs = append(f.pubs, pub)
	}
	var err error
	f.js, err = jetstream.New(f.conns[0])
	return err
}

// close stops the workers, closes the producer and deletes the fleet's
// streams and buckets, so the next scenario starts from nothing.
func (f *fleet) close() {
	if e := f.events.String(); e != "" {
		f.r.rep.Notes = append(f.r.rep.Notes, f.name+": "+e)
	}
	for _, w := range f.workers {
		if err := w.stop(15 * time.Second); err != nil {
			f.r.progress("   worker %s: %v", w.name, err)
		}
	}
	if f.js != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		for _, s := range []string{f.names.JobsStream(), f.names.RepliesStream(), f.names.DeadLetterStream()} {
			_ = f.js.DeleteStream(ctx, s)
		}
		for _, b := range f.names.Buckets() {
			_ = f.js.DeleteKeyValue(ctx, b)
		}
		cancel()
	}
	for _, nc := range f.conns {
		nc.Close()
	}
}

// watchConsumers samples the number of consumers on the replies stream
// (the publisher's fallback readers and followers' generation readers)
// until stop is called, which returns the most seen.
func (f *fleet) watchConsumers(ctx context.Context) (stop func() int) {
	var most atomic.Int64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() { // owned by the caller: stop ends it
		defer close(finished)
		s, err := f.js.Stream(ctx, f.names.RepliesStream())
		if err != nil {
			return
		}
		for {
			if info, err := s.Info(ctx); err == nil && int64(info.State.Consumers) > most.Load() {
				most.Store(int64(info.State.Consumers))
			}
			select {
			case <-done:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	return func() int {
		close(done)
		<-finished
		return int(most.Load())
	}
}

// storedReplies is the number of messages in the replies stream.
func (f *fleet) storedReplies(ctx context.Context) uint64 {
	s, err := f.js.Stream(ctx, f.names.RepliesStream())
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// heldStreamsEnv is the worker settings for n streams held open at once
// (a herd, the memory scenario): room for n followers and their pending
// acks, and an idle cut-off longer than the upstream holds the streams
// (until all n are in, which may take longer than the default). With
// leaders every job leads: room for all of them on any worker too.
func heldStreamsEnv(n int, leaders bool) map[string]string {
	env := map[string]string{
		"CHATFLEET_MAX_CONCURRENT_FOLLOWERS": strconv.Itoa(n + 64),
		"CHATFLEET_MAX_ACK_PENDING":          strconv.Itoa(max(20000, 2*n)),
		"CHATFLEET_LLM_IDLE_TIMEOUT":         "10m",
	}
	if leaders {
		env["CHATFLEET_MAX_CONCURRENT_REQUESTS"] = strconv.Itoa(n + 64)
		env["CHATFLEET_MAX_CONCURRENT_LLM_STREAMS"] = strconv.Itoa(n + 64)
	}
	return env
}
