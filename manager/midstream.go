package manager

import (
	"errors"

	"github.com/chatfleet/chatfleet/llm"
)

// restartable reports whether a generation whose upstream stream failed
// after partial output may start again behind a reset (MidStreamRetries):
// not when the upstream refused the request — an error in its stream that
// stands for a 4xx, such as a moderation flag or a prompt too long —
// which the same request would meet again, at the cost of another call.
func restartable(err error) bool {
	var lerr *llm.Error
	return !errors.As(err, &lerr) || !lerr.Refused()
}
