package llm

import (
	"errors"
	"testing"
	"time"
)

func TestWithDefaults(t *testing.T) {
	t.Parallel()
	c := Config{}.WithDefaults()
	if c.BaseURL != DefaultBaseURL || c.HTTPClient == nil || c.HTTPClient.Timeout != 0 ||
		c.IdleTimeout != 60*time.Second || c.MaxRetries != 3 || c.RetryBaseDelay != 200*time.Millisecond ||
		c.RetryMaxDelay != 10*time.Second || c.BreakerFailures != 5 || c.BreakerCooldown != 10*time.Second {
		t.Errorf("defaults %+v", c)
	}
	set := Config{BaseURL: "http://x/v1", MaxRetries: -1, IdleTimeout: time.Second}.WithDefaults()
	if set.BaseURL != "http://x/v1" || set.MaxRetries != -1 || set.IdleTimeout != time.Second {
		t.Errorf("set fields overridden: %+v", set)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	bad := []Config{
		{BaseURL: "localhost:8000/v1"},
		{BaseURL: "ftp://host/v1"},
		{BaseURL: "http://"},
		{BaseURL: "http://[::1"},
		{IdleTimeout: -time.Second},
		{RetryBaseDelay: -1},
		{RetryMaxDelay: -1},
		{BreakerCooldown: -1},
	}
	for _, cfg := range bad {
		if _, err := New(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("New(%+v) = %v, want ErrInvalidConfig", cfg, err)
		}
	}
	if _, err := New(Config{BaseURL: "https://api.example.com/v1/", APIKey: "k"}); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	c := &Client{cfg: Config{RetryBaseDelay: 100 * time.Millisecond, RetryMaxDelay: time.Second}}
	for n, ceil := range []time.Duration{100, 200, 400, 800, 1000, 1000, 1000} {
		ceil *= time.Millisecond
		for range 50 {
			if d := c.backoff(n); d < 0 || d > ceil {
				t.Fatalf("backoff(%d) = %s, want within [0, %s]", n, d, ceil)
			}
		}
	}
	if d := c.backoff(1 << 20); d > time.Second {
		t.Errorf("huge n: %s", d)
	}
}
