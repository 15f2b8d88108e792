package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/chatfleet/chatfleet/subjects"
)

// Version is the version the tool service reports.
const Version = "0.1.0"

// Tool is one fleet tool: what the model is told of it, and its handler.
type Tool struct {
	// Name is the function name the model calls: 1–64 of [A-Za-z0-9_-].
	Name        string
	Description string
	// Parameters is the JSON schema of the arguments (an object schema);
	// nil is an object with no properties.
	Parameters json.RawMessage
	// NotIdempotent marks a tool that must not run twice for one call: when
	// a worker dies during a generation that called it, the takeover fails
	// the job instead of running the generation, and the tool, again.
	NotIdempotent bool
	Handler       Handler
}

// Handler runs one call. What it writes to out is the tool's output: the
// model reads all of it, and every listener of the generation sees each
// write as it happens. An error is the call's failure (an ArgumentError
// for arguments it cannot use); the model is told, and may recover. ctx
// ends at the caller's timeout or when the server stops.
type Handler func(ctx context.Context, call Call, out *Output) error

// Call is one call of a tool.
type Call struct {
	ID     string
	Tenant string
	// Arguments is the JSON text the model wrote.
	Arguments string
}

// ArgumentError is a handler's answer to arguments it cannot use: the
// reply's code is 400 instead of 500.
type ArgumentError struct{ Msg string }

func (e *ArgumentError) Error() string { return e.Msg }

// Config configures a tool server.
type Config struct {
	// Prefix is the fleet's subject prefix; empty is subjects.DefaultPrefix.
	Prefix string
	// MaxConcurrent bounds the calls running at once; more are answered
	// 503 at once (the caller's model sees "busy"). Default 64.
	MaxConcurrent int
	// MaxTimeout bounds a call whatever its request asks. Default 5m.
	MaxTimeout time.Duration
	// MaxOutputBytes bounds a call's output whatever its request asks.
	// Default 1 MiB.
	MaxOutputBytes int
	Logger         *slog.Logger
}

// Server serves tools as one micro service (ServiceName), one endpoint a
// tool, each on <prefix>.tool.<name> in the queue group "chatfleet-tools":
// run as many servers of a tool as its load needs.
type Server struct {
	cfg   Config
	names subjects.Names
	nc    *nats.Conn
	svc   micro.Service
	slots chan struct{}

	ctx    context.Context // ends when Stop gives up waiting
	cancel context.CancelFunc
	// mu orders dispatch's calls.Add before Stop's calls.Wait: a handler
	// may still run after the service stopped, and then answers busy.
	mu      sync.Mutex
	stopped bool
	calls   sync.WaitGroup
}

// Serve registers tools on nc and serves their calls until Stop.
func Serve(nc *nats.Conn, cfg Config, tools ...Tool) (*Server, error) {
	if len(tools) == 0 {
		return nil, errors.New("tools: no tool to serve")
	}
	s, names, err := newServer(nc, cfg, ServiceName, "chatfleet fleet tools")
	if err != nil {
		return nil, err
	}
	for _, t := range tools {
		if err := s.add(names, t); err != nil {
			s.abort()
			return nil, err
		}
	}
	return s, s.ready()
}

// newServer registers the micro service name, with no endpoint yet.
func newServer(nc *nats.Conn, cfg Config, name, description string) (*Server, subjects.Names, error) {
	cfg = cfg.withDefaults()
	names, err := subjects.New(cfg.Prefix)
	if err != nil {
		return nil, names, err
	}
	s := &Server{cfg: cfg, names: names, nc: nc, slots: make(chan struct{}, cfg.MaxConcurrent)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	svc, err := micro.AddService(nc, micro.Config{
		Name: name, Version: Version, QueueGroup: name, Description: description,
		Metadata: map[string]string{MetadataPrefix: names.Prefix()},
	})
	if err != nil {
		s.cancel()
		return nil, names, fmt.Errorf("tools: register the service: %w", err)
	}
	s.svc = svc
	return s, names, nil
}

// ready returns once the NATS server knows the endpoints: a call made
// next reaches them. On failure it stops the service.
func (s *Server) ready() error {
	if err := s.nc.FlushTimeout(10 * time.Second); err != nil {
		s.abort()
		return fmt.Errorf("tools: register the endpoints: %w", err)
	}
	return nil
}

// abort stops a server that never served.
func (s *Server) abort() {
	_ = s.svc.Stop()
	s.cancel()
}

func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = subjects.DefaultPrefix
	}
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = 64
	}
	if c.MaxTimeout <= 0 {
		c.MaxTimeout = 5 * time.Minute
	}
	if c.MaxOutputBytes <= 0 {
		c.MaxOutputBytes = 1 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// add registers one tool's endpoint.
func (s *Server) add(names subjects.Names, t Tool) error {
	if err := ValidName(t.Name); err != nil {
		return err
	}
	if t.Handler == nil {
		return fmt.Errorf("tools: tool %s has no handler", t.Name)
	}
	params := t.Parameters
	if params == nil {
		params = json.RawMessage(`{"type":"object","properties":{}}`)
	}
	var schema map[string]any
	if err := json.Unmarshal(params, &schema); err != nil {
		return fmt.Errorf("tools: tool %s: the parameters are not a JSON schema object: %w", t.Name, err)
	}
	meta := map[string]string{
		MetadataDescription: t.Description,
		MetadataParameters:  string(params),
		MetadataIdempotent:  fmt.Sprint(!t.NotIdempotent),
	}
	handler := micro.HandlerFunc(func(r micro.Request) { s.dispatch(r, func(r micro.Request) { s.run(t, r) }) })
	if err := s.svc.AddEndpoint(t.Name, handler, micro.WithEndpointSubject(names.Tool(t.Name)), micro.WithEndpointMetadata(meta)); err != nil {
		return fmt.Errorf("tools: register tool %s: %w", t.Name, err)
	}
	return nil
}

// ValidName checks a tool's name: what OpenAI allows for a function name
// and a subject token allows too.
func ValidName(name string) error {
	if err := subjects.ValidName("tool", name); err != nil {
		return err
	}
	if len(name) > 64 {
		return fmt.Errorf("tools: tool name %q is longer than 64 characters", name[:16]+"…")
	}
	return nil
}

// dispatch runs a request in a goroutine of its own (a slow tool must not
// hold up the endpoint's other calls), or answers busy.
func (s *Server) dispatch(r micro.Request, run func(micro.Request)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		respondError(r, "503", "the tool server is stopping", "")
		return
	}
	select {
	case s.slots <- struct{}{}:
	default:
		respondError(r, "503", "the tool server is busy", "")
		return
	}
	s.calls.Add(1)
	detached := detachedRequest{Request: r, nc: s.nc}
	go func() {
		defer func() { <-s.slots; s.calls.Done() }()
		run(detached)
	}()
}

// run runs one call and replies.
func (s *Server) run(t Tool, r micro.Request) {
	var req Request
	if err := json.Unmarshal(r.Data(), &req); err != nil {
		respondError(r, "400", "the request is not a tool call: "+err.Error(), "")
		return
	}
	if req.Output != "" {
		// The caller is a stranger: the server publishes with its own
		// permissions, so only on the fleet's tool output subjects.
		if _, err := s.names.ParseToolOutput(req.Output); err != nil {
			respondError(r, "400", "the request's output subject is not a tool output subject: "+err.Error(), "")
			return
		}
	}
	timeout := s.cfg.MaxTimeout
	if d := time.Duration(req.TimeoutMS) * time.Millisecond; d > 0 && d < timeout {
		timeout = d
	}
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	limit := s.cfg.MaxOutputBytes
	if req.MaxOutputBytes > 0 && req.MaxOutputBytes < limit {
		limit = req.MaxOutputBytes
	}
	out := &Output{nc: s.nc, subject: req.Output, limit: limit}
	err := s.call(ctx, t, Call{ID: req.ID, Tenant: req.Tenant, Arguments: req.Arguments}, out)
	output, truncated := out.close()
	var argErr *ArgumentError
	switch {
	case err == nil:
		_ = r.RespondJSON(Reply{Output: output, Truncated: truncated})
	case errors.As(err, &argErr):
		respondError(r, "400", err.Error(), output)
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
		respondError(r, "504", fmt.Sprintf("the tool ran out of time (%s)", timeout), output)
	default:
		respondError(r, "500", err.Error(), output)
	}
}

// call runs the handler; a panic is the call's failure, not the server's.
func (s *Server) call(ctx context.Context, t Tool, c Call, out *Output) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.cfg.Logger.Error("tool panicked", "tool", t.Name, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = fmt.Errorf("the tool %s failed", t.Name)
		}
	}()
	return t.Handler(ctx, c, out)
}

func respondError(r micro.Request, code, msg, output string) {
	body, _ := json.Marshal(Reply{Output: output, Error: msg})
	_ = r.Error(code, msg, body)
}

// Stop stops taking calls and waits for the running ones until ctx ends;
// then it cancels them and waits for them to return.
func (s *Server) Stop(ctx context.Context) error {
	err := s.svc.Stop()
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.calls.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.cancel()
		<-done
	}
	s.cancel()
	return err
}
