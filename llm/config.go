package llm

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"
)

// DefaultBaseURL is the OpenAI API.
const DefaultBaseURL = "https://api.openai.com/v1"

// Config configures a Client. The zero value talks to the OpenAI API
// without an API key.
type Config struct {
	// BaseURL is the OpenAI-compatible base URL, including /v1, for
	// example "http://localhost:8000/v1" for vLLM. Defaults to
	// "https://api.openai.com/v1".
	BaseURL string
	// APIKey is sent as a bearer token; it may be empty (Ollama,
	// llama.cpp). It is never logged or put in an error. Defaults to "".
	APIKey string
	// HTTPClient sends the requests. Give it no overall Timeout: streams
	// last as long as the answer. Defaults to a client with dial, TLS
	// handshake and response-header timeouts.
	HTTPClient *http.Client
	// IdleTimeout cuts off a request whose upstream delivers nothing
	// (headers or stream bytes) for this long, with a CodeTimeout error.
	// Every byte counts, SSE comments (keep-alives) included: an upstream
	// that keeps saying it is working is not cut off, however long it
	// thinks; the caller's deadline bounds it. Defaults to 60s.
	IdleTimeout time.Duration
	// NoStreamOptions leaves "stream_options": {"include_usage": true}
	// out of requests, for upstreams that refuse the field (their 400
	// wraps ErrStreamOptionsRefused). Such a stream usually carries no
	// usage. Defaults to false: the field is sent.
	NoStreamOptions bool

	// MaxRetries is how many times a failure before the first delta (429,
	// 5xx, connection errors, timeouts) is retried; a negative value
	// disables retries. Defaults to 3.
	MaxRetries int
	// RetryBaseDelay is the first retry's backoff ceiling; each retry
	// doubles it, with full jitter. Defaults to 200ms.
	RetryBaseDelay time.Duration
	// RetryMaxDelay caps the backoff (a longer Retry-After still wins).
	// Defaults to 10s.
	RetryMaxDelay time.Duration

	// BreakerFailures is how many consecutive failed attempts open the
	// circuit breaker; a negative value disables the breaker. Defaults to
	// 5.
	BreakerFailures int
	// BreakerCooldown is how long the breaker stays open before it lets one
	// trial request through. Defaults to 10s.
	BreakerCooldown time.Duration

	// OnRateLimited, when set, hears of every attempt the upstream answers
	// with a rate limit (429, or a rate_limit error before the first
	// delta), with the Retry-After it gave (0: none), and returns how long
	// the caller's own rate control holds new calls back (the fleet's
	// backoff): the retry waits at least that long. Defaults to nil.
	OnRateLimited func(retryAfter time.Duration) time.Duration
}

// Defaults of Config.
const (
	defaultIdleTimeout     = 60 * time.Second
	defaultMaxRetries      = 3
	defaultRetryBaseDelay  = 200 * time.Millisecond
	defaultRetryMaxDelay   = 10 * time.Second
	defaultBreakerFailures = 5
	defaultBreakerCooldown = 10 * time.Second
)

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = defaultIdleTimeout
	}
	if c.HTTPClient == nil {
		c.HTTPClient = defaultHTTPClient(c.IdleTimeout)
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = defaultMaxRetries
	}
	if c.RetryBaseDelay == 0 {
		c.RetryBaseDelay = defaultRetryBaseDelay
	}
	if c.RetryMaxDelay == 0 {
		c.RetryMaxDelay = defaultRetryMaxDelay
	}
	if c.BreakerFailures == 0 {
		c.BreakerFailures = defaultBreakerFailures
	}
	if c.BreakerCooldown == 0 {
		c.BreakerCooldown = defaultBreakerCooldown
	}
	return c
}

// validate checks a Config that has its defaults.
func (c Config) validate() error {
	u, err := url.Parse(c.BaseURL)
	if err != nil {
		return fmt.Errorf("%w: BaseURL does not parse: %v", ErrInvalidConfig, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: BaseURL %q is not an http or https URL", ErrInvalidConfig, u.Redacted())
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"IdleTimeout", c.IdleTimeout},
		{"RetryBaseDelay", c.RetryBaseDelay},
		{"RetryMaxDelay", c.RetryMaxDelay},
		{"BreakerCooldown", c.BreakerCooldown},
	} {
		if d.v < 0 {
			return fmt.Errorf("%w: %s is negative (%s)", ErrInvalidConfig, d.name, d.v)
		}
	}
	return nil
}

// defaultHTTPClient bounds each phase of connecting but not the response:
// a stream lasts as long as the answer, and IdleTimeout watches it.
func defaultHTTPClient(idle time.Duration) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: 10 * time.Second,
		// A backstop only: IdleTimeout also covers the wait for headers.
		ResponseHeaderTimeout: max(2*time.Minute, idle),
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64, // many concurrent streams go to one upstream
		IdleConnTimeout:       90 * time.Second,
	}}
}
