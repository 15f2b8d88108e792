// Package isolation_test runs a fleet shared by two tenants on a NATS
// server configured by `chatfleet auth`, every process with the identity
// generated for it, and shows what each tenant may do and what the server
// refuses it.
package isolation_test

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
