package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/chatfleet/chatfleet/protocol"
)

// PrepareServiceName is the NATS micro service preparation servers
// register as.
const PrepareServiceName = "chatfleet-prepare"

// Preparer returns the messages a leader sends upstream for job instead
// of the job's own: retrieved context, a system prompt, history. It runs
// once per dedupe key, and every request that shares the answer gets what
// it returned: for the same job it must return the same messages for as
// long as answers are shared (the duplicate window and the cache TTL).
type Preparer func(ctx context.Context, job *protocol.Job) ([]protocol.Message, error)

// PrepareReply is the body of a preparation's reply; a failure replies
// with the micro error headers and Error set.
type PrepareReply struct {
	Messages []protocol.Message `json:"messages"`
	Error    string             `json:"error,omitempty"`
}

// ServePreparation serves fn on <prefix>.prepare.<tenant> for each of
// tenants, or for every tenant when none is named. The request is the
// job as the producer sent it (normalized); the reply a PrepareReply.
func ServePreparation(nc *nats.Conn, cfg Config, fn Preparer, tenants ...string) (*Server, error) {
	if fn == nil {
		return nil, errors.New("tools: no preparer")
	}
	s, names, err := newServer(nc, cfg, PrepareServiceName, "chatfleet preparation")
	if err != nil {
		return nil, err
	}
	subjects := map[string]string{"all": names.Prepare("*")}
	if len(tenants) > 0 {
		subjects = map[string]string{}
		for _, t := range tenants {
			subjects["tenant-"+t] = names.Prepare(t)
		}
	}
	handler := micro.HandlerFunc(func(r micro.Request) { s.dispatch(r, func(r micro.Request) { s.prepare(fn, r) }) })
	for name, subject := range subjects {
		if err := s.svc.AddEndpoint(name, handler, micro.WithEndpointSubject(subject)); err != nil {
			s.abort()
			return nil, fmt.Errorf("tools: register preparation %s: %w", subject, err)
		}
	}
	return s, s.ready()
}

// prepare answers one preparation request.
func (s *Server) prepare(fn Preparer, r micro.Request) {
	var job protocol.Job
	if err := json.Unmarshal(r.Data(), &job); err != nil {
		respondPrepareError(r, "400", "the request is not a job: "+err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.MaxTimeout)
	defer cancel()
	msgs, err := s.runPreparer(ctx, fn, &job)
	if err != nil {
		respondPrepareError(r, "500", err.Error())
		return
	}
	_ = r.RespondJSON(PrepareReply{Messages: msgs})
}

// runPreparer runs fn; a panic is the request's failure, not the server's.
func (s *Server) runPreparer(ctx context.Context, fn Preparer, job *protocol.Job) (msgs []protocol.Message, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.cfg.Logger.Error("preparation panicked", "panic", fmt.Sprint(p))
			err = errors.New("the preparation failed")
		}
	}()
	return fn(ctx, job)
}

func respondPrepareError(r micro.Request, code, msg string) {
	body, _ := json.Marshal(PrepareReply{Error: msg})
	_ = r.Error(code, msg, body)
}

// Prepare asks the preparation service of job's tenant for the messages
// to send upstream, waiting until ctx ends. ErrNoTool says no service
// answers for the tenant.
func (c *Client) Prepare(ctx context.Context, job *protocol.Job) ([]protocol.Message, error) {
	body, err := json.Marshal(job)
	if err != nil {
		return nil, err
	}
	m, err := c.nc.RequestWithContext(ctx, c.names.Prepare(job.Tenant), body)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, ErrNoTool
	}
	if err != nil {
		return nil, err
	}
	var r PrepareReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return nil, fmt.Errorf("the preparation's reply is not JSON: %w", err)
	}
	if code := m.Header.Get(micro.ErrorCodeHeader); code != "" {
		return nil, &CallError{Code: code, Msg: m.Header.Get(micro.ErrorHeader)}
	}
	return r.Messages, nil
}
