package gateway

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/chatfleet/chatfleet/internal/microask"
	"github.com/chatfleet/chatfleet/worker"
)

// fleet learns from the workers' micro service (worker.ServiceName) what
// the gateway cannot know itself: whether any worker runs (a request
// nothing would answer gets 503 at once, instead of waiting in the queue)
// and which models they serve.
type fleet struct {
	nc     *nats.Conn
	prefix string
	fresh  time.Duration
	wait   time.Duration // for the first answer of a ping

	mu      sync.Mutex
	checked time.Time
	running bool
}

// workersRunning reports whether a worker of this fleet answered a ping:
// the first answer ends the wait, which lasts up to wait (a second by
// default: a busy worker answers late, and a false "none" would refuse a
// request it would serve). "Some" is trusted for the fresh interval, "none" for an eighth
// of it, so a fleet that comes back is seen soon.
func (f *fleet) workersRunning(ctx context.Context) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	trusted := f.fresh
	if !f.running {
		trusted /= 8
	}
	if time.Since(f.checked) < trusted {
		return f.running
	}
	infos := f.ask(ctx, micro.PingVerb, f.wait, true)
	f.running, f.checked = len(infos) > 0, time.Now()
	return f.running
}

// models lists the models the fleet's workers serve: every allow-list's
// entries, and the default model of each worker (the model a job that
// names none gets; a worker with an empty allow-list serves any model,
// which cannot be listed).
func (f *fleet) models(ctx context.Context) []string {
	var out []string
	for _, info := range f.ask(ctx, micro.InfoVerb, 300*time.Millisecond, false) {
		if m := info.Metadata[worker.MetadataModel]; m != "" {
			out = append(out, m)
		}
		for m := range strings.SplitSeq(info.Metadata[worker.MetadataAllowedModels], ",") {
			if m = strings.TrimSpace(m); m != "" {
				out = append(out, m)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// serviceInfo is the part of a micro service's ping or info answer read.
type serviceInfo struct {
	Metadata map[string]string `json:"metadata"`
}

// ask sends verb to every worker and collects the answers of this
// fleet's (by prefix) for up to wait; first stops at the first.
func (f *fleet) ask(ctx context.Context, verb micro.Verb, wait time.Duration, first bool) []serviceInfo {
	var out []serviceInfo
	microask.Ask(ctx, f.nc, verb, worker.ServiceName, wait, first, func(msg *nats.Msg) bool {
		var info serviceInfo
		if json.Unmarshal(msg.Data, &info) != nil || info.Metadata["prefix"] != f.prefix {
			return false
		}
		out = append(out, info)
		return true
	})
	return out
}
