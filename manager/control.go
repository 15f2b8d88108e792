package manager

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/nats-io/nats.go"
)

// Workers talk to each other on <prefix>.ctl.<worker>: a follower hub joins
// the leading worker's generation (the leader then mirrors it to its
// generation subject) and leaves it when its last local request is gone,
// so the leader knows when nobody anywhere still wants the answer. A hub
// on the same worker that cannot share in memory (a cache:false hub
// following a cache:true one) takes the same path to itself.

type controlMsg struct {
	Op     string `json:"op"`     // "join" or "leave"
	Gen    string `json:"gen"`    // the generation ID
	Worker string `json:"worker"` // the follower's worker, for operators
	Hub    string `json:"hub"`    // the follower hub: joins are idempotent per hub
}

type controlReply struct {
	OK bool `json:"ok"`
}

var errGenGone = errors.New("generation is gone")

// join asks h's worker to let hub follow h's generation. It returns
// errGenGone when the generation is not led there (any more), or the
// transport error (no responders, timeout) when the leader cannot be
// reached. After a transport error the join may still have registered, so
// the caller leaves again (leave is harmless when not joined).
func (m *Manager) join(ctx context.Context, holder leaseValue, hub string) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.JoinTimeout)
	defer cancel()
	b, _ := json.Marshal(controlMsg{Op: "join", Gen: holder.Gen, Worker: m.cfg.WorkerID, Hub: hub})
	msg, err := m.nc.RequestWithContext(ctx, m.cfg.Names.Control(holder.Worker), b)
	if err != nil {
		return err
	}
	var r controlReply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return err
	}
	if !r.OK {
		return errGenGone
	}
	return nil
}

// leave tells h's worker that hub no longer follows h's generation. Best
// effort: a lost leave only lets the leader finish an answer nobody reads.
func (m *Manager) leave(holder leaseValue, hub string) {
	b, _ := json.Marshal(controlMsg{Op: "leave", Gen: holder.Gen, Worker: m.cfg.WorkerID, Hub: hub})
	_ = m.nc.Publish(m.cfg.Names.Control(holder.Worker), b)
}

// handleControl answers join and leave for the generations this worker
// leads.
// It runs on the control subscription's goroutine and never waits long:
// startMirroring only publishes without acks.
func (m *Manager) handleControl(msg *nats.Msg) {
	var c controlMsg
	if err := json.Unmarshal(msg.Data, &c); err != nil || c.Hub == "" {
		return
	}
	switch c.Op {
	case "leave":
		m.hubs.leaveRemote(c.Gen, c.Hub)
	case "join":
		h := m.hubs.leader(c.Gen)
		b, _ := json.Marshal(controlReply{OK: h != nil && h.startMirroring(c.Gen, c.Hub)})
		_ = msg.Respond(b)
	}
}
