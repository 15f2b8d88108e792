package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/gateway"
	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
)

// sseEvent is one event of a gateway stream, as a raw client reads it.
type sseEvent struct {
	id, data string
}

// sseReader reads a gateway stream event by event.
type sseReader struct {
	resp *http.Response
	sc   *bufio.Scanner
}

func openStream(t *testing.T, ctx context.Context, method, url, body string, header http.Header) *sseReader {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, b)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return &sseReader{resp: resp, sc: bufio.NewScanner(resp.Body)}
}

// next returns the next event with data (comments skipped); io.EOF at the
// end of the stream.
func (s *sseReader) next() (sseEvent, error) {
	var ev sseEvent
	for s.sc.Scan() {
		line := s.sc.Text()
		switch {
		case line == "" && ev.data != "":
			return ev, nil
		case strings.HasPrefix(line, "id: "):
			ev.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			ev.data = strings.TrimPrefix(line, "data: ")
		}
	}
	if err := s.sc.Err(); err != nil {
		return ev, err
	}
	return ev, io.EOF
}

// content is the text a chunk event carries.
func content(t *testing.T, ev sseEvent) string {
	t.Helper()
	if ev.data == "[DONE]" {
		return ""
	}
	var c struct {
		Choices []struct {
			Delta struct {
				Content string `json:"content"`
			} `json:"delta"`
		} `json:"choices"`
		Error *struct{ Code string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(ev.data), &c); err != nil || c.Error != nil {
		t.Fatalf("event %q: %v", ev.data, err)
	}
	if len(c.Choices) == 0 {
		return ""
	}
	return c.Choices[0].Delta.Content
}

const slowBody = `{"model":"` + testModel + `","stream":true,"messages":[{"role":"user","content":"resume me"}]}`

// TestResumeOnAnotherGateway: a stream dropped after a few chunks is
// resumed on a second gateway replica from its Last-Event-ID, with the
// resume token (as a browser's EventSource would): the two parts are the
// whole answer, nothing lost, nothing repeated; the request was not
// cancelled by the drop.
func TestResumeOnAnotherGateway(t *testing.T) {
	t.Parallel()
	b := setup(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithDelay(0, 20*time.Millisecond)}}, nil)
	other := bundle{f: b.f}.withGateway(t, nil) // same resume secret
	ctx := fleettest.Context(t, 60*time.Second)

	first, cancel := context.WithCancel(ctx)
	s := openStream(t, first, "POST", b.url+"/chat/completions", slowBody, http.Header{"Content-Type": {"application/json"}})
	id := s.resp.Header.Get(gateway.HeaderRequestID)
	token := s.resp.Header.Get(gateway.HeaderResumeToken)
	var got strings.Builder
	var last string
	for range 4 { // the role chunk and three of content
		ev, err := s.next()
		if err != nil {
			t.Fatal(err)
		}
		got.WriteString(content(t, ev))
		last = ev.id
	}
	cancel() // the connection drops

	r := openStream(t, ctx, "GET", other.url+"/chat/completions/chatcmpl-"+id+"/stream?token="+token, "", http.Header{"Last-Event-ID": {last}})
	var ids []string
	for {
		ev, err := r.next()
		if err == io.EOF {
			t.Fatal("the resumed stream ended without [DONE]")
		}
		if err != nil {
			t.Fatal(err)
		}
		if ev.data == "[DONE]" {
			break
		}
		ids = append(ids, ev.id)
		got.WriteString(content(t, ev))
	}
	if want := answerTo("resume me"); got.String() != want {
		t.Errorf("resumed answer %q, want %q", got.String(), want)
	}
	if len(ids) == 0 || ids[0] == last {
		t.Errorf("resumed ids %v after %s", ids, last)
	}
	if ev, found, err := b.f.Pub.LastEvent(ctx, "default", id); err != nil || !found || ev.Type != protocol.EventDone {
		t.Errorf("the request ended %+v (%v): a resumed stream must not be cancelled", ev, err)
	}
	// A forged token is refused.
	req, _ := http.NewRequestWithContext(ctx, "GET", other.url+"/chat/completions/"+id+"/stream?token=x."+token, nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Errorf("forged token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}

// TestDisconnectCancels: a client that goes away and does not resume
// cancels its request (after the resume grace): the upstream call ends.
func TestDisconnectCancels(t *testing.T) {
	t.Parallel()
	stall, release := fleettest.Stalled()
	defer release()
	b := setup(t, fleettest.Options{LLM: []llmtest.Option{stall}}, func(c *gateway.Config) { c.ResumeGrace = 50 * time.Millisecond })
	ctx := fleettest.Context(t, 30*time.Second)
	first, cancel := context.WithCancel(ctx)
	s := openStream(t, first, "POST", b.url+"/chat/completions", slowBody, http.Header{"Content-Type": {"application/json"}})
	id := s.resp.Header.Get(gateway.HeaderRequestID)
	if _, err := s.next(); err != nil { // the role chunk: the worker has it
		t.Fatal(err)
	}
	cancel()
	if err := b.f.LLM.WaitDisconnects(ctx, 1); err != nil {
		t.Fatalf("the upstream call was not cancelled: %v", err)
	}
	fleettest.Poll(t, ctx, "the request ended cancelled", func() bool {
		ev, found, _ := b.f.Pub.LastEvent(ctx, "default", id)
		return found && ev.Type == protocol.EventCancelled
	})
}

// TestTraceContinues: an incoming traceparent reaches the job: the job's
// span (and so the worker's and the upstream call's) joins the caller's
// trace.
func TestTraceContinues(t *testing.T) {
	t.Parallel()
	b := setup(t, fleettest.Options{}, nil)
	ctx := fleettest.Context(t, 30*time.Second)
	sub, err := natsConn(t, b).SubscribeSync("chat.jobs.>")
	if err != nil {
		t.Fatal(err)
	}
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequestWithContext(ctx, "POST", b.url+"/chat/completions",
		strings.NewReader(`{"model":"`+testModel+`","messages":[{"role":"user","content":"traced"}]}`))
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	msg, err := sub.NextMsgWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tp := msg.Header.Get("traceparent"); !strings.Contains(tp, traceID) {
		t.Errorf("job traceparent %q, want trace %s", tp, traceID)
	}
}
