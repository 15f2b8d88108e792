package cli_test

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/config"
	"github.com/chatfleet/chatfleet/internal/fleettest"
)

// envLines returns `chatfleet env`'s table as the fields of each line, by
// variable name.
func envLines(t *testing.T, out string) map[string][]string {
	t.Helper()
	rows := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "CHATFLEET_") {
			rows[f[0]] = f[1:]
		}
	}
	return rows
}

// TestEnvListsVariables: env prints every variable of config.Env, each
// with its default.
func TestEnvListsVariables(t *testing.T) {
	res := run(fleettest.Context(t, 10*time.Second), "", "env")
	if res.code != 0 || res.err != "" {
		t.Fatalf("env: %v", res)
	}
	rows := envLines(t, res.out)
	defaults := map[string]string{
		"CHATFLEET_NATS_URL":                   "nats://127.0.0.1:4222",
		"CHATFLEET_MAX_CONCURRENT_REQUESTS":    "64",
		"CHATFLEET_MAX_CONCURRENT_LLM_STREAMS": "16",
		"CHATFLEET_DEV_LISTEN":                 "127.0.0.1:4222",
		"CHATFLEET_HTTP_ADDR":                  ":9090",
		"CHATFLEET_DEV_WORKERS":                "1",
	}
	for name, def := range defaults {
		if f := rows[name]; len(f) == 0 || f[0] != def {
			t.Errorf("%s: %v, want default %q", name, f, def)
		}
	}
	// No default: the description follows the name directly.
	if f := rows["CHATFLEET_LLM_API_KEY"]; len(f) == 0 || !strings.Contains(strings.Join(f, " "), "never printed") {
		t.Errorf("CHATFLEET_LLM_API_KEY: %v", f)
	}
	typ := reflect.TypeFor[config.Env]()
	for i := range typ.NumField() {
		name := typ.Field(i).Tag.Get("envconfig")
		if _, ok := rows[name]; !ok {
			t.Errorf("%s (field %s) is not listed", name, typ.Field(i).Name)
		}
	}
	if len(rows) != typ.NumField() {
		t.Errorf("%d variables listed, config.Env has %d", len(rows), typ.NumField())
	}
	if !strings.Contains(res.out, "OPENAI_API_KEY") {
		t.Errorf("env does not mention the OPENAI_API_KEY fallback:\n%s", res.out)
	}
}

// TestEnvHidesSecrets: env prints defaults, never the secrets set in the
// environment.
func TestEnvHidesSecrets(t *testing.T) {
	secrets := map[string]string{
		"CHATFLEET_LLM_API_KEY":   "sk-cli-test-llm-5f2b9e",
		"OPENAI_API_KEY":          "sk-cli-test-openai-81ac3d",
		"CHATFLEET_NATS_PASSWORD": "nats-pass-cli-test-77d1",
		"CHATFLEET_NATS_TOKEN":    "nats-token-cli-test-0c4e",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	res := run(fleettest.Context(t, 10*time.Second), "", "env")
	if res.code != 0 {
		t.Fatalf("env: %v", res)
	}
	if len(envLines(t, res.out)) == 0 {
		t.Fatalf("env printed no variables:\n%s", res.out)
	}
	for k, v := range secrets {
		if strings.Contains(res.out+res.err, v) {
			t.Errorf("the value of %s appears in env's output", k)
		}
	}
}

// TestEnvMatchesREADME: the README's configuration table and `chatfleet
// env` list the same variables, in the same order, with the same default
// and meaning (the README's backticks aside).
func TestEnvMatchesREADME(t *testing.T) {
	res := run(fleettest.Context(t, 10*time.Second), "", "env")
	if res.code != 0 {
		t.Fatalf("env: %v", res)
	}
	env := envTable(t, res.out)
	readme := readmeConfigTable(t)
	if len(env) != len(readme) {
		t.Errorf("env lists %d variables, the README %d", len(env), len(readme))
	}
	for i := range min(len(env), len(readme)) {
		if env[i] != readme[i] {
			t.Errorf("row %d:\n  env:    %q\n  README: %q", i+1, env[i], readme[i])
		}
	}
}

// envTable returns `chatfleet env`'s rows: variable, default, meaning,
// cut at the header's columns.
func envTable(t *testing.T, out string) [][3]string {
	t.Helper()
	lines := strings.Split(out, "\n")
	header := lines[0]
	def, meaning := strings.Index(header, "DEFAULT"), strings.Index(header, "MEANING")
	if !strings.HasPrefix(header, "VARIABLE") || def < 0 || meaning < def {
		t.Fatalf("env's header: %q", header)
	}
	var rows [][3]string
	for _, line := range lines[1:] {
		if !strings.HasPrefix(line, "CHATFLEET_") {
			continue
		}
		if len(line) < meaning {
			t.Fatalf("env's row %q is shorter than its columns", line)
		}
		rows = append(rows, [3]string{strings.TrimSpace(line[:def]), strings.TrimSpace(line[def:meaning]), strings.TrimSpace(line[meaning:])})
	}
	return rows
}

// readmeConfigTable returns the rows of the README's configuration table:
// variable, default, meaning, without backticks.
func readmeConfigTable(t *testing.T) [][3]string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Configuration\n")
	if !ok {
		t.Fatal("README.md has no Configuration section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var rows [][3]string
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `CHATFLEET_") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		if len(cells) != 3 {
			t.Fatalf("README row %q has %d cells, want 3", line, len(cells))
		}
		var row [3]string
		for i, c := range cells {
			row[i] = strings.TrimSpace(strings.ReplaceAll(c, "`", ""))
		}
		rows = append(rows, row)
	}
	return rows
}
