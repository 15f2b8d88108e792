package deploytest

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestChartValuesDocumented: the chart's README table names every value
// of values.yaml (a free-form map by its own name), and nothing else.
func TestChartValuesDocumented(t *testing.T) {
	var v map[string]any
	if err := yaml.Unmarshal(readRepoFile(t, "deploy", "helm", "chatfleet", "values.yaml"), &v); err != nil {
		t.Fatal(err)
	}
	documented := documentedValues(t)
	all := valuePaths("", v)
	for _, leaf := range all {
		if !slices.ContainsFunc(documented, func(d string) bool { return leaf == d || strings.HasPrefix(leaf, d+".") }) {
			t.Errorf("the chart's README does not document %s", leaf)
		}
	}
	for _, d := range documented {
		if !slices.ContainsFunc(all, func(leaf string) bool { return leaf == d || strings.HasPrefix(leaf, d+".") }) {
			t.Errorf("the chart's README documents %s, which values.yaml lacks", d)
		}
	}
}

var tableRow = regexp.MustCompile("(?m)^\\| (`[^|]+)\\|")
var codeSpan = regexp.MustCompile("`([^`]+)`")

// documentedValues are the value paths the README's table names in its
// first column.
func documentedValues(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, row := range tableRow.FindAllStringSubmatch(string(readRepoFile(t, "deploy", "helm", "chatfleet", "README.md")), -1) {
		for _, m := range codeSpan.FindAllStringSubmatch(row[1], -1) {
			out = append(out, m[1])
		}
	}
	if len(out) == 0 {
		t.Fatal("the chart's README has no values table")
	}
	return out
}

// valuePaths lists the dotted paths of v's leaves: scalars, lists and
// empty maps.
func valuePaths(prefix string, v map[string]any) []string {
	var out []string
	for k, x := range v {
		p := strings.TrimPrefix(prefix+"."+k, ".")
		if m, ok := x.(map[string]any); ok && len(m) > 0 {
			out = append(out, valuePaths(p, m)...)
			continue
		}
		out = append(out, p)
	}
	return out
}
