package tools

import (
	"encoding/json"
	"errors"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// detachedRequest answers a service request after its micro handler has
// returned (dispatch runs calls in goroutines of their own). micro's own
// Respond and Error record the outcome in the request, which micro reads
// for its statistics as soon as the handler returns: answering through
// them from another goroutine is a data race. This answers on the
// connection instead; micro's error counts then leave these calls out.
type detachedRequest struct {
	micro.Request
	nc *nats.Conn
}

var errNoReply = errors.New("tools: the request has no reply subject")

func (r detachedRequest) Respond(data []byte, opts ...micro.RespondOpt) error {
	if r.Reply() == "" {
		return errNoReply
	}
	msg := &nats.Msg{Subject: r.Reply(), Data: data, Header: nats.Header{}}
	for _, opt := range opts {
		opt(msg)
	}
	return r.nc.PublishMsg(msg)
}

func (r detachedRequest) RespondJSON(v any, opts ...micro.RespondOpt) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return r.Respond(data, opts...)
}

func (r detachedRequest) Error(code, description string, data []byte, opts ...micro.RespondOpt) error {
	if code == "" || description == "" {
		return errors.New("tools: an error reply needs a code and a description")
	}
	withError := func(msg *nats.Msg) {
		msg.Header.Set(micro.ErrorHeader, description)
		msg.Header.Set(micro.ErrorCodeHeader, code)
	}
	return r.Respond(data, append(opts, withError)...)
}
