package cli

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"text/tabwriter"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/config"
	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/subjects"
	"github.com/chatfleet/chatfleet/worker"
)

// upstreamStatus is one upstream in `chatfleet status`: its fleet-wide
// limits and use (as `upstream limits show` reads them), the streams the
// workers have open to it, and their breakers' states, by state.
type upstreamStatus struct {
	upstreamView
	Streams  int64         `json:"streams"`  // open now, summed over the workers
	Breakers breakerCounts `json:"breakers"` // workers by breaker state
}

// breakerCounts counts workers by their breaker's state for an upstream.
type breakerCounts struct {
	Closed   int `json:"closed"`
	Open     int `json:"open"`
	HalfOpen int `json:"half_open"`
}

func (b *breakerCounts) add(state string) {
	switch state {
	case llm.BreakerOpen:
		b.Open++
	case llm.BreakerHalfOpen:
		b.HalfOpen++
	default:
		b.Closed++
	}
}

// upstreamStatuses reads the state of the default upstream and every
// upstream a worker reports.
func upstreamStatuses(ctx context.Context, js jetstream.JetStream, env config.Env, names subjects.Names, ws []worker.Status) ([]upstreamStatus, error) {
	by := map[string]*upstreamStatus{protocol.DefaultUpstream: {}}
	for _, w := range ws {
		for _, r := range w.Routes {
			u := by[r.Name]
			if u == nil {
				u = &upstreamStatus{}
				by[r.Name] = u
			}
			u.Streams += r.Streams
			u.Breakers.add(r.Breaker)
		}
	}
	// A fleet whose topology an older version made has no upstreams
	// bucket (its workers ignore fleet-wide limits): breakers only.
	kv, err := js.KeyValue(ctx, names.UpstreamsBucket())
	if err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("bucket %s: %w", names.UpstreamsBucket(), err)
	}
	out := []upstreamStatus{}
	for _, name := range slices.Sorted(maps.Keys(by)) {
		u := by[name]
		u.Name, u.Factor = name, 1
		if kv != nil {
			v, err := readUpstreamView(ctx, js, kv, env, names, name)
			if err != nil {
				return nil, fmt.Errorf("upstream %s: %w", name, err)
			}
			u.upstreamView = *v
		}
		out = append(out, *u)
	}
	return out, nil
}

// printUpstreams prints a line per upstream.
func printUpstreams(us []upstreamStatus, io IO) error {
	fmt.Fprintln(io.Out)
	tw := tabwriter.NewWriter(io.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "UPSTREAM\tSTREAMS\tLIMITS\tTHIS MINUTE\tBACKOFF\tBREAKERS")
	for _, u := range us {
		backoff := "none"
		if u.BackoffUntil != nil {
			backoff = "until " + u.BackoffUntil.Format("15:04:05")
		}
		if u.Factor < 1 {
			backoff += fmt.Sprintf(", limits ×%.2f", u.Factor)
		}
		b := u.Breakers
		fmt.Fprintf(tw, "%s\t%d (%d shares)\t%s\t%d requests, %d tokens\t%s\tclosed %d, open %d, half-open %d\n", u.Name, u.Streams,
			u.StreamsHeld, describeUpstreamLimits(u.Limits), u.MinuteRequests, u.MinuteTokens, backoff, b.Closed, b.Open, b.HalfOpen)
	}
	return tw.Flush()
}
