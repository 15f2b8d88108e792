package manager

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/kvmirror"
	"github.com/chatfleet/chatfleet/protocol"
)

// upstreamView mirrors the upstreams bucket on this worker: each
// upstream's fleet-wide limits (under its name), the fleet's requests and
// tokens this minute (<name>.window) and its backoff after a 429
// (<name>.backoff). Every worker watches the bucket, so a change applies
// at once everywhere. An upstream the bucket holds no limits for has the
// worker's configured defaults (Config.FleetLimits, from CHATFLEET_FLEET_*).
type upstreamView struct {
	m        *Manager
	defaults map[string]protocol.UpstreamLimits // by upstream: its limits while the bucket holds none

	mu      sync.Mutex
	limits  map[string]protocol.UpstreamLimits
	windows map[string]protocol.UpstreamWindow
	backoff map[string]protocol.UpstreamBackoff
	changed chan struct{} // closed and replaced on every change that may free a waiter
	bad     map[string]bool
}

func newUpstreamView(m *Manager) *upstreamView {
	defaults := map[string]protocol.UpstreamLimits{protocol.DefaultUpstream: m.cfg.FleetLimits}
	for _, u := range m.cfg.Upstreams {
		defaults[u.Name] = u.Limits
	}
	return &upstreamView{m: m, defaults: defaults, limits: map[string]protocol.UpstreamLimits{},
		windows: map[string]protocol.UpstreamWindow{}, backoff: map[string]protocol.UpstreamBackoff{},
		changed: make(chan struct{}), bad: map[string]bool{}}
}

// upstreamState is one upstream as the view sees it now.
type upstreamState struct {
	limits  protocol.UpstreamLimits // as set (the bucket's, or the defaults)
	window  protocol.UpstreamWindow
	backoff protocol.UpstreamBackoff
}

// effective returns the limits at now, scaled down by the backoff's
// recovered factor.
func (s upstreamState) effective(now time.Time) protocol.UpstreamLimits {
	f := s.backoff.Recovered(now)
	l := s.limits
	l.MaxStreams = protocol.Scale(l.MaxStreams, f)
	l.RequestsPerMinute = protocol.Scale(l.RequestsPerMinute, f)
	return l
}

// get returns the upstream's state and a channel closed when it changes.
func (v *upstreamView) get(name string) (upstreamState, <-chan struct{}) {
	v.mu.Lock()
	defer v.mu.Unlock()
	limits, ok := v.limits[name]
	if !ok {
		limits = v.defaults[name]
	}
	return upstreamState{limits: limits, window: v.windows[name], backoff: v.backoff[name]}, v.changed
}

// apply takes one update of the bucket.
func (v *upstreamView) apply(e jetstream.KeyValueEntry) {
	name, kind, _ := strings.Cut(e.Key(), ".")
	deleted := e.Operation() != jetstream.KeyValuePut
	var err error
	var limits protocol.UpstreamLimits
	var window protocol.UpstreamWindow
	var backoff protocol.UpstreamBackoff
	if !deleted {
		switch kind {
		case "":
			limits, err = protocol.DecodeUpstreamLimits(e.Value())
		case "window":
			err = decodeVersioned(e.Value(), &window, &window.V)
		case "backoff":
			err = decodeVersioned(e.Value(), &backoff, &backoff.V)
		default:
			return // not a key of this version
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if err != nil {
		if !v.bad[e.Key()] {
			v.bad[e.Key()] = true
			v.m.cfg.Logger.Warn("upstreams bucket entry unreadable; ignored", "key", e.Key(), "err", err)
		}
		deleted = true
	} else {
		delete(v.bad, e.Key())
	}
	switch {
	case kind == "" && deleted:
		delete(v.limits, name)
	case kind == "":
		v.limits[name] = limits
	case kind == "window" && deleted:
		delete(v.windows, name)
	case kind == "window":
		v.windows[name] = window
	case deleted:
		delete(v.backoff, name)
	default:
		v.backoff[name] = backoff
	}
	if kind == "window" && !deleted {
		// Every generation writes a window, and a fuller window frees no
		// waiter (one waiting for the next minute has its timer): waking
		// every waiter of every worker for it would be waste.
		return
	}
	close(v.changed)
	v.changed = make(chan struct{})
}

// decodeVersioned decodes b into dst, whose version field is ver.
func decodeVersioned(b []byte, dst any, ver *int) error {
	if err := json.Unmarshal(b, dst); err != nil {
		return err
	}
	if *ver < 1 {
		return fmt.Errorf("entry of version %d", *ver)
	}
	return nil
}

// watchUpstreams mirrors the upstreams bucket into m.upstreams until the
// manager stops; it returns once the entries stored so far are applied.
func (m *Manager) watchUpstreams(ctx context.Context) error {
	mirror, err := kvmirror.Start(ctx, m.nc, m.topo.Upstreams, ">", m.cfg.Logger, m.upstreams.apply)
	if err != nil {
		return fmt.Errorf("manager: upstreams: %w", err)
	}
	m.upstreamMirror = mirror
	return nil
}
