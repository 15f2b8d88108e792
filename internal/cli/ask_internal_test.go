package cli

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/publisher"
)

// TestGaveUpEndsLine: when ask gives up, a partial answer's line is ended
// before the message, once; a line already ended gets no empty one; the
// message says what became of the request.
func TestGaveUpEndsLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		printed   string
		cancelErr error
		out, err  string
		code      int
	}{
		{"partial answer", nil, "partial answer\n", "chatfleet ask: timed out after 1s; the request was cancelled\n", ExitCancelled},
		{"a whole line\n", nil, "a whole line\n", "chatfleet ask: timed out after 1s; the request was cancelled\n", ExitCancelled},
		{"", nil, "", "chatfleet ask: timed out after 1s; the request was cancelled\n", ExitCancelled},
		{"partial", publisher.ErrAlreadyFinished, "partial\n", "chatfleet ask: timed out after 1s; the request had already finished\n", ExitFailed},
		{"partial", errors.New("no bucket"), "partial\n", "chatfleet ask: timed out after 1s; cancelling the request failed, it may go on: no bucket\n", ExitFailed},
	} {
		var out, errb strings.Builder
		a := &asker{f: &askFlags{timeout: time.Second}, io: IO{Out: &out, Err: &errb}, out: &lineWriter{w: &out},
			redact: func(err error) error { return err }}
		fmt.Fprint(a.out, tc.printed)
		// ExitCancelled stands for any code the caller gives a cancel.
		code := a.gaveUp(fmt.Sprintf("timed out after %s", a.f.timeout), tc.cancelErr, ExitCancelled)
		if out.String() != tc.out || errb.String() != tc.err || code != tc.code {
			t.Errorf("after %q, cancel %v: out %q, err %q, exit %d; want %q, %q, %d", tc.printed, tc.cancelErr, out.String(), errb.String(), code, tc.out, tc.err, tc.code)
		}
	}
}
