package devtools

import (
	"strings"
	"testing"
)

func TestEvaluate(t *testing.T) {
	for expr, want := range map[string]float64{"17*23": 391, "1 + 2 * 3": 7, "(1+2)*3": 9, "-2^2": -4, "2^3^2": 512, "7 % 4": 3, "1.5e1/3": 5} {
		if got, err := Evaluate(expr); err != nil || got != want {
			t.Errorf("%s = %v (%v), want %v", expr, got, err, want)
		}
	}
	for _, bad := range []string{"", "1+", "(1", "1)", "2*x", "1/0", strings.Repeat("(", 200) + "1"} {
		if got, err := Evaluate(bad); err == nil {
			t.Errorf("%q = %v, want an error", bad, got)
		}
	}
}
