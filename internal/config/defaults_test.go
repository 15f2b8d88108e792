package config

import (
	"reflect"
	"testing"

	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/manager"
	"github.com/chatfleet/chatfleet/topology"
)

// TestDefaultsAgree: each variable's default (its envconfig tag, which
// `chatfleet env` and the README's table show) is the default of the
// library setting it feeds, so a worker configured through the
// environment and one built in Go with zero values behave alike.
func TestDefaultsAgree(t *testing.T) {
	for _, k := range []string{"CHATFLEET_LLM_BASE_URL", "CHATFLEET_LLM_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL"} {
		t.Setenv(k, "")
	}
	e, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	w := e.Worker(e.LLM(), nil)

	got, want := w.Manager.WithDefaults(), manager.Config{}.WithDefaults()
	// Set from elsewhere, not defaults of their own.
	for _, c := range []*manager.Config{&got, &want} {
		c.WorkerID, c.DefaultModel, c.Limits, c.Logger, c.TracerProvider, c.MeterProvider = "", "", got.Limits, nil, nil, nil
	}
	compare(t, "manager", got, want)

	gotTop, wantTop := e.Topology().WithDefaults(), topology.Config{}.WithDefaults()
	gotTop.MaxJobBytes = wantTop.MaxJobBytes // the stream's is derived from CHATFLEET_MAX_JOB_BYTES
	compare(t, "topology", gotTop, wantTop)

	gotLLM, wantLLM := e.LLM().WithDefaults(), llm.Config{}.WithDefaults()
	gotLLM.HTTPClient, wantLLM.HTTPClient = nil, nil // a client each, not a setting
	compare(t, "llm", gotLLM, wantLLM)
}

// compare reports every field of two configs that differs.
func compare[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	g, w := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := range g.NumField() {
		f := g.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		if !reflect.DeepEqual(g.Field(i).Interface(), w.Field(i).Interface()) {
			t.Errorf("%s.%s: the environment's default %v, the library's %v", what, f.Name, g.Field(i).Interface(), w.Field(i).Interface())
		}
	}
}
