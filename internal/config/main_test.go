package config

import (
	"testing"

	"go.uber.org/goleak"
)

// The topology test runs a NATS server; it must be gone when the tests end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
