package deploytest

import (
	"slices"
	"strings"
	"testing"
)

// otherVariables are the variables the deployments may set besides
// chatfleet's own (deploy/README.md lists them): Go's runtime settings,
// and OpenTelemetry's OTEL_*, which the exporter reads.
var otherVariables = []string{"GOGC", "GOMEMLIMIT"}

// checkVariable fails t when a deployment sets a variable that neither
// chatfleet nor the short list of others knows: a misspelt setting would
// be ignored without a word.
func checkVariable(t *testing.T, where, name string) {
	t.Helper()
	if _, ok := variableDefaults(t)[name]; ok || slices.Contains(otherVariables, name) || strings.HasPrefix(name, "OTEL_") {
		return
	}
	t.Errorf("%s sets %s, which `chatfleet env` does not list (nor GOGC, GOMEMLIMIT, OTEL_*)", where, name)
}
