package manager

import (
	"time"

	"github.com/chatfleet/chatfleet/protocol"
)

// progressReport decides when a request tells its reader what it waits
// for, until its first output: a stage that has held for stageSettle goes
// out (one that output or the next stage follows sooner is not worth an
// event), and the stage is repeated after every ProgressInterval without
// an event, so a reader can tell a request that waits from one that is
// stuck. It belongs to the request's goroutine.
type progressReport struct {
	r       *request
	quiet   *time.Timer // the heartbeat
	settle  *time.Timer // a stage change goes out when it fires
	pending bool        // a stage change waits for settle
}

// stageSettle is how long a stage must hold before a progress event says
// so: long enough that a leader whose upstream answers at once sends none,
// short enough that a reader hears of a wait within a blink.
const stageSettle = 100 * time.Millisecond

func newProgressReport(r *request) *progressReport {
	p := &progressReport{r: r, quiet: time.NewTimer(r.m.cfg.ProgressInterval), settle: time.NewTimer(stageSettle)}
	p.settle.Stop()
	return p
}

func (p *progressReport) stop() {
	p.quiet.Stop()
	p.settle.Stop()
}

// stageChanged takes the hub's new stage; it goes out once it settles.
func (p *progressReport) stageChanged(stage, reason string) {
	if !p.r.firstChunk.IsZero() {
		return // progress tells of the wait for the first output only
	}
	p.r.stage, p.r.reason, p.pending = stage, reason, true
	p.settle.Reset(stageSettle)
}

// dropPending drops a pending stage change: output or the end came first.
func (p *progressReport) dropPending() { p.pending = false }

// settled publishes a pending stage change once it has held; false when
// the publish ended the request.
func (p *progressReport) settled() bool {
	if !p.pending {
		return true
	}
	p.pending = false
	if p.r.publish(protocol.Event{Type: protocol.EventProgress, Stage: p.r.stage, Reason: p.r.reason}) != nil {
		return false
	}
	p.quiet.Reset(p.r.m.cfg.ProgressInterval)
	return true
}

// heartbeat repeats the stage after a quiet interval, until the first
// output; false when the publish ended the request.
func (p *progressReport) heartbeat() bool {
	if !p.r.firstChunk.IsZero() {
		return true
	}
	if p.r.heartbeat() != nil {
		return false
	}
	p.quiet.Reset(p.r.m.cfg.ProgressInterval)
	return true
}

// heartbeat repeats the request's current stage: it is alive and still
// waiting for its first output.
func (r *request) heartbeat() error {
	stage := r.stage
	if stage == "" {
		stage = protocol.StageGenerating // routed, and nothing reported yet: the leader is at work
	}
	return r.publish(protocol.Event{Type: protocol.EventProgress, Stage: stage, Reason: r.reason})
}
