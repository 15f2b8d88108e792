package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nuid"

	"github.com/chatfleet/chatfleet/internal/microask"
	"github.com/chatfleet/chatfleet/subjects"
)

// ErrNoTool is a call of a tool no server serves.
var ErrNoTool = errors.New("no server of the tool is running")

// CallError is a call the tool answered with a failure.
type CallError struct {
	Code string // "400" bad arguments, "500" failure, "503" busy, "504" out of time
	Msg  string
}

func (e *CallError) Error() string { return e.Msg }

// Client finds the fleet's tools and calls them: what a worker leading a
// generation uses.
type Client struct {
	nc    *nats.Conn
	names subjects.Names
	// fresh is how long a discovery is trusted for tools it found; a tool
	// it did not find is looked for again at once (see Lookup).
	fresh time.Duration

	mu      sync.Mutex
	checked time.Time
	known   map[string]Info
}

// NewClient returns a client of the tools of the fleet with prefix.
func NewClient(nc *nats.Conn, names subjects.Names) *Client {
	return &Client{nc: nc, names: names, fresh: 30 * time.Second}
}

// Tools returns the tools the fleet's tool servers advertise, by name,
// asked of every server: an answer is waited for 250 ms, so a discovery
// is kept for 30 s. Two servers that advertise one name differently: the
// first answer wins.
func (c *Client) Tools(ctx context.Context) map[string]Info {
	return c.Lookup(ctx)
}

// Lookup returns what Tools does, asking the servers again when a tool
// in names is not among those found last (a tool server that just
// started) — at most every 250 ms, so a job naming a tool nobody serves
// does not make every job wait.
func (c *Client) Lookup(ctx context.Context, names ...string) map[string]Info {
	c.mu.Lock()
	defer c.mu.Unlock()
	age := time.Since(c.checked)
	if c.known != nil && age < c.fresh && (age < 250*time.Millisecond || c.has(names)) {
		return c.known
	}
	known := map[string]Info{}
	microask.Ask(ctx, c.nc, micro.InfoVerb, ServiceName, 250*time.Millisecond, false, func(msg *nats.Msg) bool {
		var info micro.Info
		if json.Unmarshal(msg.Data, &info) != nil || info.Metadata[MetadataPrefix] != c.names.Prefix() {
			return false
		}
		for _, ep := range info.Endpoints {
			if _, seen := known[ep.Name]; seen || ep.Subject != c.names.Tool(ep.Name) || ValidName(ep.Name) != nil {
				continue
			}
			params := json.RawMessage(ep.Metadata[MetadataParameters])
			if !json.Valid(params) {
				continue
			}
			known[ep.Name] = Info{Name: ep.Name, Description: ep.Metadata[MetadataDescription], Parameters: params,
				Idempotent: ep.Metadata[MetadataIdempotent] != "false"}
		}
		return true
	})
	if ctx.Err() != nil {
		// Cut short by the caller, not by the wait: not what the fleet
		// offers, so not kept for the worker's other jobs.
		return known
	}
	c.known, c.checked = known, time.Now()
	return known
}

func (c *Client) has(names []string) bool {
	for _, n := range names {
		if _, ok := c.known[n]; !ok {
			return false
		}
	}
	return true
}

// Call calls tool name and waits for its reply until ctx ends. onChunk,
// when set, receives the output the tool streams, in order (a lost chunk
// is skipped: the reply has the whole output); it runs in Call's
// goroutine. A tool's failure is a *CallError with the reply (the output
// so far).
func (c *Client) Call(ctx context.Context, name string, req Request, onChunk func(Chunk)) (Reply, error) {
	if dl, ok := ctx.Deadline(); ok && req.TimeoutMS == 0 {
		req.TimeoutMS = max(1, time.Until(dl).Milliseconds())
	}
	var chunks chan *nats.Msg
	if onChunk != nil {
		req.Output = c.names.ToolOutput(nuid.Next())
		chunks = make(chan *nats.Msg, 256)
		sub, err := c.nc.ChanSubscribe(req.Output, chunks)
		if err != nil {
			return Reply{}, err
		}
		defer func() { _ = sub.Unsubscribe() }()
	}
	replies := make(chan *nats.Msg, 1)
	inbox := c.nc.NewRespInbox()
	sub, err := c.nc.ChanSubscribe(inbox, replies)
	if err != nil {
		return Reply{}, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	body, err := json.Marshal(req)
	if err != nil {
		return Reply{}, err
	}
	if err := c.nc.PublishRequest(c.names.Tool(name), inbox, body); err != nil {
		return Reply{}, err
	}
	last := 0
	relay := func(m *nats.Msg) {
		var ch Chunk
		if json.Unmarshal(m.Data, &ch) == nil && ch.Seq > last {
			last = ch.Seq
			onChunk(ch)
		}
	}
	for {
		select {
		case m := <-chunks:
			relay(m)
		case m := <-replies:
			// The tool published its chunks before its reply, on one
			// connection: they are queued here already.
			for len(chunks) > 0 {
				relay(<-chunks)
			}
			r, err := readReply(m)
			return holdReply(r, err, req.MaxOutputBytes)
		case <-ctx.Done():
			return Reply{}, ctx.Err()
		}
	}
}

// holdReply holds a reply to the limit the request asked for: a server
// may ignore it (it is a stranger), and what it sends goes to the model
// and into events. A limit of 0 is none.
func holdReply(r Reply, err error, limit int) (Reply, error) {
	if limit <= 0 {
		return r, err
	}
	if len(r.Output) > limit {
		r.Output, r.Truncated = CutAt(r.Output, limit), true
	}
	if len(r.Error) > limit {
		r.Error = CutAt(r.Error, limit)
	}
	var ce *CallError
	if errors.As(err, &ce) && len(ce.Msg) > limit {
		ce.Msg = CutAt(ce.Msg, limit)
	}
	return r, err
}

// readReply reads a tool's reply, a failure or the server's "no
// responders".
func readReply(m *nats.Msg) (Reply, error) {
	if m.Header.Get("Status") == "503" && len(m.Data) == 0 {
		return Reply{}, ErrNoTool
	}
	var r Reply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return Reply{}, fmt.Errorf("the tool's reply is not JSON: %w", err)
	}
	if code := m.Header.Get(micro.ErrorCodeHeader); code != "" {
		msg := m.Header.Get(micro.ErrorHeader)
		if r.Error == "" {
			r.Error = msg
		}
		return r, &CallError{Code: code, Msg: msg}
	}
	return r, nil
}
