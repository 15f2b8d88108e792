package deploytest

import (
	"path"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"sigs.k8s.io/yaml"
)

// release is what `helm install` names; its namespace is where the
// objects go.
const (
	releaseName      = "fleet"
	releaseNamespace = "chatfleet"
)

// renderChart renders deploy/helm/chatfleet with values over its defaults,
// as helm install would, and returns its manifests, one YAML document
// each (NOTES.txt left out).
func renderChart(t *testing.T, values map[string]any) []string {
	t.Helper()
	docs, err := tryRender(t, values)
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

// tryRender is renderChart returning the render's error.
func tryRender(t *testing.T, values map[string]any) ([]string, error) {
	t.Helper()
	files, err := renderFiles(t, values)
	if err != nil {
		return nil, err
	}
	var docs []string
	for _, name := range slices.Sorted(mapKeys(files)) {
		if path.Ext(name) != ".yaml" {
			continue
		}
		for _, doc := range strings.Split(files[name], "\n---") {
			if strings.TrimSpace(stripComments(doc)) != "" {
				docs = append(docs, doc)
			}
		}
	}
	return docs, nil
}

// renderFiles renders the chart's templates, NOTES.txt included, by name.
func renderFiles(t *testing.T, values map[string]any) (map[string]string, error) {
	t.Helper()
	ch, err := loader.Load(repoPath("deploy", "helm", "chatfleet"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Validate(); err != nil {
		t.Fatal(err)
	}
	opts := chartutil.ReleaseOptions{Name: releaseName, Namespace: releaseNamespace, Revision: 1, IsInstall: true}
	rv, err := chartutil.ToRenderValues(ch, values, opts, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	return engine.Render(ch, rv)
}

// stripComments drops YAML comment lines, to tell an empty document.
func stripComments(doc string) string {
	var keep []string
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// values reads YAML into chart values.
func values(t *testing.T, y string) map[string]any {
	t.Helper()
	v := map[string]any{}
	if err := yaml.Unmarshal([]byte(y), &v); err != nil {
		t.Fatal(err)
	}
	return v
}
