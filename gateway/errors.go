package gateway

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/chatfleet/chatfleet/protocol"
)

// httpError is an error answer: its status, OpenAI body and, for 429/503,
// how long to wait.
type httpError struct {
	status     int
	body       errorBody
	retryAfter time.Duration
}

func newError(status int, typ, code, param, msg string) *httpError {
	e := &httpError{status: status, body: errorBody{Error: apiError{Message: msg, Type: typ}}}
	if code != "" {
		e.body.Error.Code = &code
	}
	if param != "" {
		e.body.Error.Param = &param
	}
	return e
}

// write sends e as the whole response.
func (e *httpError) write(w http.ResponseWriter) {
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.retryAfter+time.Second-1)/time.Second)))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(e.body)
}

// fromProtocol maps a job's error event onto the HTTP status and OpenAI
// error a client expects (see the README's error table).
func fromProtocol(perr *protocol.Error) *httpError {
	code := string(perr.Code)
	switch perr.Code {
	case protocol.CodeInvalidRequest:
		if perr.Field == "model" {
			return newError(http.StatusNotFound, "invalid_request_error", "model_not_found", "model", perr.Message)
		}
		return newError(http.StatusBadRequest, "invalid_request_error", code, perr.Field, perr.Message)
	case protocol.CodeQueueFull, protocol.CodeRateLimited, protocol.CodeQuotaExceeded:
		e := newError(http.StatusTooManyRequests, "rate_limit_error", code, "", perr.Message)
		e.retryAfter = time.Second
		if perr.RetryAfterMS > 0 {
			e.retryAfter = time.Duration(perr.RetryAfterMS) * time.Millisecond
		}
		return e
	case protocol.CodeUpstreamUnavailable:
		e := newError(http.StatusServiceUnavailable, "server_error", code, "", perr.Message)
		e.retryAfter = time.Second
		return e
	case protocol.CodeTimeout, protocol.CodeQueueTimeout:
		return newError(http.StatusGatewayTimeout, "server_error", code, "", perr.Message)
	case protocol.CodeDuplicateID:
		return newError(http.StatusConflict, "invalid_request_error", code, "", perr.Message)
	case protocol.CodeUpstreamError:
		if perr.Status >= 400 && perr.Status < 500 && perr.Status != http.StatusTooManyRequests {
			return newError(perr.Status, "invalid_request_error", code, "", perr.Message)
		}
		return newError(http.StatusBadGateway, "server_error", code, "", perr.Message)
	case protocol.CodeAnswerTooLarge:
		return newError(http.StatusBadGateway, "server_error", code, "", perr.Message)
	default:
		return newError(http.StatusInternalServerError, "server_error", code, "", perr.Message)
	}
}

// The gateway's own errors.
var (
	errCancelled = newError(http.StatusConflict, "invalid_request_error", "cancelled", "", "the request was cancelled")
	errNoWorkers = func() *httpError {
		e := newError(http.StatusServiceUnavailable, "server_error", "no_workers",
			"", "no chatfleet worker is running: nothing would answer the request")
		e.retryAfter = 5 * time.Second
		return e
	}()
	errStopping = newError(http.StatusServiceUnavailable, "server_error", "gateway_stopping", "",
		"this gateway is stopping; retry on another replica")
	errUnauthorized = newError(http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", "",
		"missing or unknown API key (Authorization: Bearer <key>)")
)
