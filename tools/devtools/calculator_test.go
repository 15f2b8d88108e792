package devtools

import (
	"strings"
	"testing"

	"github.com/chatfleet/chatfleet/tools"
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

// TestClock: the clock answers in the zone asked for, and refuses one it
// does not know as bad arguments.
func TestClock(t *testing.T) {
	h := Clock().Handler
	if err := h(t.Context(), tools.Call{Arguments: `{"time_zone":"Mars/Olympus"}`}, nil); err == nil {
		t.Error("an unknown time zone was accepted")
	} else if _, ok := err.(*tools.ArgumentError); !ok {
		t.Errorf("unknown time zone: %v, want an ArgumentError", err)
	}
}
