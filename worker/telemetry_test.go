package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/internal/telemetry"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/worker"
)

// TestTraceFromPublisherToWorker: one trace runs from the publisher's send
// span through the worker's job span to the upstream span; a follower's
// route span links to its leader's job span.
func TestTraceFromPublisherToWorker(t *testing.T) {
	t.Parallel()
	rec, ended := tracetest.NewSpanRecorder(), make(spanEnds, 1)
	// ended is told after rec has recorded each span: processors run in order.
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSpanProcessor(ended))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	stall, release := fleettest.Stalled()
	defer release()
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{stall}})
	f.StartWorker(func(c *worker.Config) {
		withModel(c)
		c.Manager.TracerProvider = tp
	})
	pub, err := publisher.New(natstest.Connect(t, f.NATS.ClientURL()), publisher.WithTracerProvider(tp))
	if err != nil {
		t.Fatal(err)
	}
	ctx := fleettest.Context(t, 30*time.Second)
	leader, err := pub.Submit(ctx, userJob("trace me"))
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := leader.Next(ctx); err != nil || ev.Role != protocol.RoleLeader {
		t.Fatalf("leader meta: %+v %v", ev, err)
	}
	follower, err := pub.Submit(ctx, userJob("trace me"))
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := follower.Next(ctx); err != nil || ev.Role != protocol.RoleFollower {
		t.Fatalf("follower meta: %+v %v", ev, err)
	}
	release()
	for _, r := range []*publisher.Reply{leader, follower} {
		if _, err := r.Collect(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// The job spans end when the jobs are settled, just after the reply.
	spans := waitSpans(rec, ended, 11) // 2 × (send, process, queue_wait, route, relay) + chat

	byName := func(name, id string) sdktrace.ReadOnlySpan {
		for _, s := range spans {
			if s.Name() != name {
				continue
			}
			if id == "" {
				return s
			}
			for _, a := range s.Attributes() {
				if a.Key == "messaging.message.id" && a.Value.AsString() == id {
					return s
				}
			}
		}
		t.Fatalf("no span %q (id %q) among %v", name, id, names(spans))
		return nil
	}
	send := byName("send chat.jobs.default", leader.ID())
	process := byName("process chat.jobs.default", leader.ID())
	if send.SpanKind() != trace.SpanKindProducer || process.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("kinds: send %v, process %v", send.SpanKind(), process.SpanKind())
	}
	if process.Parent().SpanID() != send.SpanContext().SpanID() || process.SpanContext().TraceID() != send.SpanContext().TraceID() {
		t.Errorf("the worker's span does not continue the publisher's trace")
	}
	chat := byName("chat test-model", "")
	if chat.Parent().SpanID() != process.SpanContext().SpanID() || chat.SpanKind() != trace.SpanKindClient {
		t.Errorf("upstream span: parent %v, kind %v", chat.Parent().SpanID(), chat.SpanKind())
	}
	if !hasAttr(chat, "gen_ai.request.model", "test-model") || !hasAttr(chat, "gen_ai.operation.name", "chat") || !hasEvent(chat, "gen_ai.first_token") {
		t.Errorf("upstream span attributes %v, events %v", chat.Attributes(), chat.Events())
	}
	for _, child := range []string{"chatfleet.queue_wait", "chatfleet.route", "chatfleet.relay"} {
		found := false
		for _, s := range spans {
			if s.Name() == child && s.Parent().SpanID() == process.SpanContext().SpanID() {
				found = true
			}
		}
		if !found {
			t.Errorf("no %s span under the leader's job span", child)
		}
	}
	followerProcess := byName("process chat.jobs.default", follower.ID())
	var followerRoute sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == "chatfleet.route" && s.Parent().SpanID() == followerProcess.SpanContext().SpanID() {
			followerRoute = s
		}
	}
	if followerRoute == nil || len(followerRoute.Links()) != 1 || followerRoute.Links()[0].SpanContext.SpanID() != process.SpanContext().SpanID() {
		t.Fatalf("the follower's route span must link to the leader's job span")
	}
}

// spanEnds is a span processor that signals each span's end, so a test
// waits for spans instead of polling. Its buffer of one keeps a signal
// that arrives while nobody waits.
type spanEnds chan struct{}

func (e spanEnds) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (e spanEnds) OnEnd(sdktrace.ReadOnlySpan) {
	select {
	case e <- struct{}{}:
	default: // a signal is pending already
	}
}
func (e spanEnds) Shutdown(context.Context) error   { return nil }
func (e spanEnds) ForceFlush(context.Context) error { return nil }

// waitSpans returns the spans rec has recorded once there are n of them,
// or after 10s, whichever comes first.
func waitSpans(rec *tracetest.SpanRecorder, ended spanEnds, n int) []sdktrace.ReadOnlySpan {
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for len(rec.Ended()) < n {
		select {
		case <-ended:
		case <-deadline.C:
			return rec.Ended()
		}
	}
	return rec.Ended()
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

func hasAttr(s sdktrace.ReadOnlySpan, key, value string) bool {
	for _, a := range s.Attributes() {
		if string(a.Key) == key && a.Value.Emit() == value {
			return true
		}
	}
	return false
}

func hasEvent(s sdktrace.ReadOnlySpan, name string) bool {
	for _, e := range s.Events() {
		if e.Name == name {
			return true
		}
	}
	return false
}

// metricsFleet starts a fleet with one worker that serves its HTTP
// endpoints, /metrics included, on a loopback port; change (when not nil)
// adjusts the worker's config, opts the upstream.
func metricsFleet(t *testing.T, instance string, change func(*worker.Config), opts ...llmtest.Option) (*fleettest.Fleet, *worker.Worker) {
	t.Helper()
	tel, err := telemetry.Setup(context.Background(), "chatfleet-worker", instance)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	f := fleettest.New(t, fleettest.Options{LLM: opts})
	w := f.StartWorker(func(c *worker.Config) {
		withModel(c)
		c.HTTPAddr = "127.0.0.1:0"
		c.Metrics = tel.Metrics
		c.Manager.MeterProvider = tel.Meter
		if change != nil {
			change(c)
		}
	})
	return f, w
}

// TestMetricsAfterARun: after a leader, a follower, a cache hit and an
// invalid job, /metrics has every chatfleet_* series with its labels.
func TestMetricsAfterARun(t *testing.T) {
	t.Parallel()
	f, w := metricsFleet(t, "metrics-test", nil)
	ctx := fleettest.Context(t, 30*time.Second)
	job := userJob("count me")
	for range 2 { // a leader, then a cache hit
		if _, err := f.Pub.Complete(ctx, job); err != nil {
			t.Fatal(err)
		}
	}
	publishRaw(t, f, "bad-1", `{"id":"bad-1","messages":[{"role":"boss","content":"bad"}]}`)
	// The reply goes out before the job is dead-lettered and settled:
	// wait (with a deadline) for the worker to count it.
	url := "http://" + w.HTTPAddr().String() + "/metrics"
	body := scrapeUntil(t, ctx, url, "the invalid job counted", func(body string) bool {
		return strings.Contains(body, `chatfleet_dead_letters_total 1`) && strings.Contains(body, `code="invalid_request"`)
	})
	for _, want := range []string{
		`chatfleet_jobs_total{code="",outcome="done",role="leader"} 1`,
		`chatfleet_jobs_total{code="",outcome="done",role="cache"} 1`,
		`chatfleet_jobs_total{code="invalid_request",outcome="error",role="routing"} 1`,
		`chatfleet_upstream_calls_total 1`,
		`chatfleet_tokens_total{kind="completion"}`,
		`chatfleet_tokens_total{kind="prompt"}`,
		`chatfleet_tokens_saved_total{by="cache"}`,
		`chatfleet_time_to_first_token_seconds_bucket{role="leader"`,
		`chatfleet_queue_wait_seconds_count 3`,
		`chatfleet_processing_seconds_count{outcome="done"} 2`,
		`chatfleet_requests_in_flight{role="routing"} 0`,
		`chatfleet_slots_used{pool="llm"} 0`,
		`chatfleet_slots_total{pool="requests"} 64`,
		`chatfleet_slots_total{pool="followers"} 1024`,
		`chatfleet_generations_in_flight 0`,
		`chatfleet_dead_letters_total 1`,
		// Series that nothing in this run moved are there at zero.
		`chatfleet_upstream_errors_total{code="rate_limited"} 0`,
		`chatfleet_upstream_errors_total{code="timeout"} 0`,
		`chatfleet_leader_takeovers_total 0`,
		`chatfleet_leader_leases_lost_total 0`,
		`chatfleet_panics_total 0`,
		`chatfleet_tokens_saved_total{by="dedupe"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// The only worker maintains the fleet: once it scanned, it reports the
	// jobs waiting in the queue (none).
	body = scrapeUntil(t, ctx, url, "chatfleet_queue_waiting 0", func(body string) bool {
		return strings.Contains(body, "chatfleet_queue_waiting 0")
	})
	// The dashboard only queries series that exist.
	assertDashboardSeries(t, body)
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// scrapeUntil scrapes url until its body satisfies cond (what, in the
// failure) or ctx ends, and returns the last body.
func scrapeUntil(t *testing.T, ctx context.Context, url, what string, cond func(body string) bool) string {
	t.Helper()
	for {
		body := scrape(t, url)
		if cond(body) {
			return body
		}
		select {
		case <-ctx.Done():
			t.Fatalf("/metrics: %s never happened (%v):\n%s", what, ctx.Err(), body)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

var seriesName = regexp.MustCompile(`chatfleet_[a-z_]+`)

// assertDashboardSeries checks every chatfleet_* name the Grafana dashboard
// queries appears in a scrape (histograms by their _bucket/_count/_sum).
func assertDashboardSeries(t *testing.T, scrape string) {
	t.Helper()
	dash, err := deployFile("grafana/chatfleet.json")
	if err != nil {
		t.Fatalf("the dashboard: %v", err)
	}
	for _, name := range seriesName.FindAllString(string(dash), -1) {
		if !strings.Contains(scrape, name) {
			t.Errorf("the dashboard queries %s, which the worker does not export", name)
		}
	}
}

// TestHealthAndReadiness: /healthz answers while the process lives;
// /readyz fails while the worker drains and while NATS is unreachable.
func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	stall, release := fleettest.Stalled()
	defer release()
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{stall}})
	w := f.StartWorker(func(c *worker.Config) {
		withModel(c)
		c.HTTPAddr = "127.0.0.1:0"
	})
	base := "http://" + w.HTTPAddr().String()
	status := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := status("/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	if code, body := status("/readyz"); code != 200 || !strings.Contains(body, `"ready":true`) {
		t.Fatalf("/readyz = %d %s", code, body)
	}
	ctx := fleettest.Context(t, 30*time.Second)
	r, err := f.Pub.Submit(ctx, userJob("keep it busy"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	if err := f.LLM.WaitCalls(ctx, 1); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- w.Stop(ctx) }() // drains: waits for the stalled job
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := status("/readyz")
		if code == http.StatusServiceUnavailable && strings.Contains(body, `"draining":true`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never reported draining: %d %s", code, body)
		}
		time.Sleep(10 * time.Millisecond) // Stop sets the flag first; nothing to wait on from here
	}
	if code, _ := status("/healthz"); code != 200 {
		t.Errorf("/healthz while draining = %d, want 200", code)
	}
	release()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

// TestReadinessWithoutNATS: /readyz fails while NATS is unreachable.
func TestReadinessWithoutNATS(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	w := f.StartWorker(func(c *worker.Config) {
		withModel(c)
		c.HTTPAddr = "127.0.0.1:0"
	})
	f.NATS.Shutdown()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + w.HTTPAddr().String() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable && !strings.Contains(string(b), `"nats":"CONNECTED"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %s", resp.StatusCode, b)
		}
		time.Sleep(10 * time.Millisecond) // the client notices the lost server on its own
	}
}

// TestMicroService: every worker answers NATS micro discovery, as `nats
// micro ls` asks it, and its status endpoint.
func TestMicroService(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	w1, w2 := f.StartWorker(withModel), f.StartWorker(withModel)
	nc := natstest.Connect(t, f.NATS.ClientURL())
	ctx := fleettest.Context(t, 30*time.Second)
	if _, err := f.Pub.Complete(ctx, userJob("one")); err != nil {
		t.Fatal(err)
	}

	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.PublishRequest("$SRV.INFO."+worker.ServiceName, inbox, nil); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for len(seen) < 2 {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			t.Fatalf("discovery: %v (seen %v)", err, seen)
		}
		var info micro.Info
		if err := json.Unmarshal(msg.Data, &info); err != nil {
			t.Fatal(err)
		}
		seen[info.Metadata["worker"]] = true
	}
	if !seen[w1.ID()] || !seen[w2.ID()] {
		t.Errorf("discovered %v", seen)
	}
	msg, err := nc.RequestWithContext(ctx, "chat.status."+w1.ID(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var st worker.Status
	if err := json.Unmarshal(msg.Data, &st); err != nil {
		t.Fatal(err)
	}
	if st.Worker != w1.ID() || st.Slots["requests"].Total != 64 || st.InFlight == nil || st.Upstreams.Breaker != "closed" {
		t.Errorf("status = %+v", st)
	}
}

// TestLogsKeepSecrets: an end-to-end run through every path (leader,
// follower, cache, invalid job, cancel, upstream error) at debug level
// logs neither the API key nor any prompt text.
func TestLogsKeepSecrets(t *testing.T) {
	t.Parallel()
	const apiKey = "sk-secret-3b1f9c0e7d2a"
	const prompt = "my-private-prompt-8f3a"
	var logs lockedBuffer
	release := make(chan struct{})
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		rep := llmtest.DefaultReply(r)
		switch {
		case strings.Contains(r.LastUserMessage(), "refuse"):
			return llmtest.Reply{Status: 401, Message: "bad key " + apiKey}
		case strings.Contains(r.LastUserMessage(), "stall"):
			rep.StallAfter, rep.Release = -1, release
		}
		return rep
	})}})
	f.StartWorker(func(c *worker.Config) {
		withModel(c)
		c.LLM.APIKey = apiKey
		c.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	ctx := fleettest.Context(t, 30*time.Second)
	a := userJob(prompt)
	for range 2 {
		if _, err := f.Pub.Complete(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = f.Pub.Complete(ctx, userJob(prompt+" refuse"))
	publishRaw(t, f, "bad-2", `{"id":"bad-2","messages":[{"role":"boss","content":"`+prompt+` invalid"}]}`)
	s, err := f.Pub.Submit(ctx, userJob(prompt+" stall"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.LLM.WaitCalls(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if err := f.Pub.Cancel(ctx, s.Tenant(), s.ID()); err != nil {
		t.Fatal(err)
	}
	_, _ = s.Collect(ctx)
	close(release)

	out := logs.String()
	for _, line := range []string{"invalid job terminated", "upstream failed", "request ended"} {
		if !strings.Contains(out, line) {
			t.Fatalf("the logs lack %q: the scan would be vacuous:\n%s", line, out)
		}
	}
	if !strings.Contains(out, `"request"`) || !strings.Contains(out, `"tenant"`) {
		t.Fatalf("the logs do not cover the run (is the scan vacuous?):\n%s", out)
	}
	for _, secret := range []string{apiKey, prompt} {
		if strings.Contains(out, secret) {
			t.Errorf("the logs contain %q:\n%s", secret, out)
		}
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// publishRaw publishes a job the publisher would refuse, as another
// client might, and waits for its answer on the reply subject.
func publishRaw(t *testing.T, f *fleettest.Fleet, id, body string) {
	t.Helper()
	nc := natstest.Connect(t, f.NATS.ClientURL())
	sub, err := nc.SubscribeSync("chat.reply.default." + id)
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg("chat.jobs.default")
	msg.Data = []byte(body)
	msg.Header.Set(nats.MsgIdHdr, id)
	if err := nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsgWithContext(fleettest.Context(t, 10*time.Second)); err != nil {
		t.Fatalf("no answer to the raw job: %v", err)
	}
}
