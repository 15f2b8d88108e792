package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// How long a tenant change waits for the workers to apply it, and how long
// each round of asking them waits for their answers.
const (
	confirmWait    = 3 * time.Second
	confirmAskWait = 250 * time.Millisecond
)

// confirmApplied waits until every worker that answers has applied the
// tenants bucket at revision rev or later — so a job pulled after the
// command returns meets the change — for up to confirmWait, and says on
// io.Err how many had not by then. Workers watch the bucket and apply a
// change within moments; without this wait, a job submitted right after
// `tenant pause` could start on a worker whose watch had not delivered
// the pause yet. A worker that said it had not is waited for until it
// says it has: missing one round of answers (busy for a moment) does not
// make it up to date. Workers of earlier versions do not say what they
// have applied and are not waited for.
func confirmApplied(ctx context.Context, nc *nats.Conn, prefix string, rev uint64, io IO) {
	deadline := time.Now().Add(confirmWait)
	seen, behind := map[string]bool{}, map[string]bool{} // by worker ID
	for {
		asked := time.Now()
		statuses, err := workerStatuses(ctx, nc, prefix, confirmAskWait)
		if err != nil {
			return
		}
		for _, st := range statuses {
			seen[st.Worker] = true
			switch {
			case st.TenantsRevision == nil: // an earlier version
			case *st.TenantsRevision < rev:
				behind[st.Worker] = true
			default:
				delete(behind, st.Worker)
			}
		}
		if len(behind) == 0 {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			fmt.Fprintf(io.Err, "chatfleet tenant: %d of %d workers have not applied the change yet; each does as its watch of the tenants bucket delivers it\n",
				len(behind), len(seen))
			return
		}
		// A round ends at once when no worker is left to answer ("no
		// responders"): rounds start confirmAskWait apart all the same.
		select {
		case <-time.After(time.Until(asked.Add(confirmAskWait))):
		case <-ctx.Done():
		}
	}
}
