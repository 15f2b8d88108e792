package llm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	openai "github.com/sashabaranov/go-openai"

	"github.com/chatfleet/chatfleet/protocol"
)

// maxMessage bounds an upstream body quoted in Error.Message.
const maxMessage = 512

// classify turns any failure of the stream into an *Error; a is the
// attempt it happened in, nil between attempts. The API key is redacted
// from the message.
func (s *Stream) classify(err error, a *attempt) *Error {
	e := s.classifyRaw(err, a)
	e.Message = s.c.redact(e.Message)
	return e
}

func (s *Stream) classifyRaw(err error, a *attempt) *Error {
	// Our own reasons for ending a request come first: the upstream's
	// errors are their symptoms.
	if s.ctx.Err() != nil {
		return contextError(s.ctx)
	}
	if errors.Is(context.Cause(s.sctx), errClosed) {
		return &Error{Code: protocol.CodeInternal, Message: "stream used after Close", Err: errClosed}
	}
	if a == nil {
		return &Error{Code: protocol.CodeInternal, Message: err.Error(), Err: err}
	}
	if errors.Is(context.Cause(a.ctx), errIdle) {
		return &Error{
			Code:      protocol.CodeTimeout,
			Message:   fmt.Sprintf("the upstream went silent for %s (IdleTimeout)", s.c.cfg.IdleTimeout),
			Retryable: !s.started,
			Err:       errIdle,
		}
	}

	// The upstream answered with an error status.
	var apiErr *openai.APIError
	var reqErr *openai.RequestError
	switch {
	case errors.As(err, &apiErr) && apiErr.HTTPStatusCode != 0:
		return statusError(apiErr.HTTPStatusCode, apiErr.Message, a.retryAfter, err)
	case errors.As(err, &reqErr):
		return statusError(reqErr.HTTPStatusCode, quote(reqErr.Body), a.retryAfter, err)
	case a.status >= 300:
		return statusError(a.status, err.Error(), a.retryAfter, err) // reading its body failed
	}

	// The upstream could not be reached.
	if a.doErr != nil {
		return transportError(a.doErr)
	}
	if !a.sent {
		return &Error{
			Code:    protocol.CodeInvalidRequest,
			Message: "go-openai refused the request before sending it: " + err.Error(),
			Err:     err,
		}
	}

	return s.streamFailure(err, apiErr)
}

// streamFailure classifies the failure of a stream the upstream accepted
// (2xx); apiErr is err's *openai.APIError, if any.
func (s *Stream) streamFailure(err error, apiErr *openai.APIError) *Error {
	var inStream *upstreamError
	switch {
	case errors.As(err, &inStream): // an error the upstream sent in the stream
		inStream.message = s.c.redact(inStream.message) // Err's text too
		e := inStream.classify(err)
		e.Retryable = e.Retryable && !s.started // like a broken stream
		return e
	case apiErr != nil: // an error object in the stream
		return &Error{Code: protocol.CodeUpstreamError, Message: apiErr.Message, Err: err}
	case errors.Is(err, errNoDone), errors.Is(err, io.ErrUnexpectedEOF), isNetError(err):
		code := protocol.CodeUpstreamError
		if isTimeout(err) {
			code = protocol.CodeTimeout
		}
		return &Error{
			Code:      code,
			Message:   "the stream broke off before data: [DONE]: " + err.Error(),
			Retryable: !s.started,
			Err:       err,
		}
	default: // JSON errors, lines too long, a JSON body that is no chat.completion
		return &Error{Code: protocol.CodeUpstreamError, Message: "malformed stream: " + err.Error(), Err: err}
	}
}

// requestError classifies the failure of a plain (not streaming) request.
func requestError(ctx context.Context, err error) *Error {
	var apiErr *openai.APIError
	var reqErr *openai.RequestError
	switch {
	case ctx.Err() != nil:
		return contextError(ctx)
	case errors.As(err, &apiErr) && apiErr.HTTPStatusCode != 0:
		return statusError(apiErr.HTTPStatusCode, apiErr.Message, 0, err)
	case errors.As(err, &reqErr):
		return statusError(reqErr.HTTPStatusCode, quote(reqErr.Body), 0, err)
	case isNetError(err):
		return transportError(err)
	default:
		return &Error{Code: protocol.CodeUpstreamError, Message: "malformed answer: " + err.Error(), Err: err}
	}
}

// statusError classifies an HTTP error status.
func statusError(status int, msg string, retryAfter time.Duration, err error) *Error {
	if msg == "" {
		msg = http.StatusText(status)
	}
	e := &Error{Status: status, Message: msg, RetryAfter: retryAfter, Err: err}
	switch {
	case status == http.StatusTooManyRequests:
		e.Code, e.Retryable = protocol.CodeRateLimited, true
	case status == http.StatusRequestTimeout:
		e.Code, e.Retryable = protocol.CodeTimeout, true
	case status >= 500:
		e.Code, e.Retryable = protocol.CodeUpstreamUnavailable, true
	default:
		e.Code = protocol.CodeUpstreamError
	}
	if refusesStreamOptions(status, msg) {
		e.Message += streamOptionsHint
		e.Err = fmt.Errorf("%w: %w", ErrStreamOptionsRefused, err)
	}
	return e
}

// streamOptionsHint ends the message of a request refused because of
// stream_options.
const streamOptionsHint = " (this upstream refuses the stream_options field chatfleet adds: " +
	"set CHATFLEET_LLM_STREAM_OPTIONS=false, or llm.Config.NoStreamOptions)"

// refusesStreamOptions reports a refusal that names stream_options: an
// unknown or unsupported field, as older servers and API versions answer.
func refusesStreamOptions(status int, msg string) bool {
	return (status == http.StatusBadRequest || status == http.StatusUnprocessableEntity) &&
		strings.Contains(strings.ToLower(msg), "stream_options")
}

// transportError classifies a failure to get a response.
func transportError(err error) *Error {
	e := &Error{
		Code:      protocol.CodeUpstreamUnavailable,
		Message:   "cannot reach the upstream: " + err.Error(),
		Retryable: true,
		Err:       err,
	}
	if isTimeout(err) {
		e.Code = protocol.CodeTimeout
	}
	// A certificate the client does not trust will not change on retry.
	var certErr *tls.CertificateVerificationError
	var authErr x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	if errors.As(err, &certErr) || errors.As(err, &authErr) || errors.As(err, &hostErr) {
		e.Retryable = false
	}
	return e
}

// contextError is the error of a request whose ctx ended.
func contextError(ctx context.Context) *Error {
	err := ctx.Err()
	e := &Error{Code: protocol.CodeInternal, Message: "request cancelled", Err: err}
	if errors.Is(err, context.DeadlineExceeded) {
		e.Code, e.Message = protocol.CodeTimeout, "request deadline exceeded"
	}
	if cause := context.Cause(ctx); cause != nil && cause != err {
		e.Message += ": " + cause.Error()
	}
	return e
}

func isNetError(err error) bool {
	_, ok := errors.AsType[net.Error](err)
	return ok
}

// isTimeout reports a net.Error that is a timeout.
func isTimeout(err error) bool {
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}

// quote returns an error body for a message: trimmed, valid UTF-8, at most
// maxMessage bytes.
func quote(b []byte) string {
	s := strings.TrimSpace(strings.ToValidUTF8(string(b), "\uFFFD"))
	if len(s) <= maxMessage {
		return s
	}
	cut := maxMessage
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
