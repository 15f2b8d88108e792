package manager

import (
	"testing"

	"github.com/nats-io/nats.go"
)

// TestGuessID: the request ID of a job that does not decode comes from
// its Nats-Msg-Id, tenant-scoped (<tenant>.<id>) or bare as older
// publishers sent it, else from an "id" field.
func TestGuessID(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		msgID, data, want string
	}{
		{"acme.r1", "not json", "r1"},
		{"r1", "not json", "r1"},
		{"", `{"id":"r2","messages":7}`, "r2"},
		{"bad id!", `{"id":"r3"`, ""},
	} {
		h := nats.Header{}
		if tt.msgID != "" {
			h.Set("Nats-Msg-Id", tt.msgID)
		}
		if got := guessID(h, []byte(tt.data)); got != tt.want {
			t.Errorf("guessID(%q, %q) = %q, want %q", tt.msgID, tt.data, got, tt.want)
		}
	}
}
