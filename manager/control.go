package manager

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/nats-io/nats.go"
)

// Workers talk to each other on <prefix>.ctl.<worker>: a follower's hub
// joins the leading worker's generation (the leader then mirrors it to its
// generation subject) and leaves it when its last local request is gone,
// so the leader knows when nobody anywhere still wants the answer.

type controlMsg struct {
	Op     string `json:"op"` // "join" or "leave"
	Gen    string `json:"gen"`
	Worker string `json:"worker"`
}

type controlReply struct {
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"`
}

var errGenGone = errors.New("generation is gone")

// join asks h's worker to let this worker follow h's generation. It
// returns errGenGone when the generation has ended, or the transport error
// (no responders, timeout) when the leader cannot be reached.
func (m *Manager) join(ctx context.Context, h leaseValue) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.JoinTimeout)
	defer cancel()
	b, _ := json.Marshal(controlMsg{Op: "join", Gen: h.Gen, Worker: m.cfg.WorkerID})
	msg, err := m.nc.RequestWithContext(ctx, m.cfg.Names.Control(h.Worker), b)
	if err != nil {
		return false, err
	}
	var r controlReply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return false, err
	}
	if !r.OK {
		return false, errGenGone
	}
	return true, nil
}

// leave tells h's worker that this worker no longer follows h's
// generation. Best effort: a lost leave only lets the leader finish an
// answer nobody reads (it is still cached).
func (m *Manager) leave(h leaseValue) {
	b, _ := json.Marshal(controlMsg{Op: "leave", Gen: h.Gen, Worker: m.cfg.WorkerID})
	_ = m.nc.Publish(m.cfg.Names.Control(h.Worker), b)
}

// handleControl answers join and leave for generations this worker leads.
func (m *Manager) handleControl(msg *nats.Msg) {
	var c controlMsg
	if err := json.Unmarshal(msg.Data, &c); err != nil {
		return
	}
	m.hubsMu.Lock()
	g := m.gens[c.Gen]
	switch c.Op {
	case "leave":
		if g != nil {
			g.removeRemote(c.Worker)
		}
		m.hubsMu.Unlock()
	case "join":
		m.hubsMu.Unlock()
		r := controlReply{OK: g != nil && g.startMirroring(c.Worker)}
		if !r.OK {
			r.Reason = "gone"
		}
		b, _ := json.Marshal(r)
		_ = msg.Respond(b)
	default:
		m.hubsMu.Unlock()
	}
}

// setLeading registers (g != nil) or unregisters the generation this
// worker leads under genID.
func (m *Manager) setLeading(genID string, g *generation) {
	m.hubsMu.Lock()
	defer m.hubsMu.Unlock()
	if g == nil {
		delete(m.gens, genID)
	} else {
		m.gens[genID] = g
	}
}
