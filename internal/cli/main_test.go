package cli_test

import (
	"testing"

	"go.uber.org/goleak"
)

// The commands start NATS servers, workers, connections and HTTP servers;
// every one of them must be gone when the tests end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
