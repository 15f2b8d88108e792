package publisher_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/publisher"
)

// TestSubmitWithoutTopology: before any worker or `chatfleet init` has
// created the streams, Submit fails with ErrNoStream and says how to
// create them.
func TestSubmitWithoutTopology(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	ctx := fleettest.Context(t, 10*time.Second)
	_, err := f.Pub.Submit(ctx, userJob("anyone there?"))
	if !errors.Is(err, publisher.ErrNoStream) {
		t.Fatalf("err = %v, want ErrNoStream", err)
	}
	for _, want := range []string{"CHAT_JOBS", "chat.jobs.default", "run a worker or `chatfleet init`"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
}
