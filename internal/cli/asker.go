package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
)

// asker runs one ask.
type asker struct {
	f      *askFlags
	pub    *publisher.Publisher
	io     IO
	out    *lineWriter
	redact func(error) error // removes the configuration's secrets
}

// interruptedWait bounds the wait for a request's cancelled event after
// Ctrl-C cancelled it: a job still queued ends only when a worker pulls
// it, and ask should not wait for that.
const interruptedWait = 3 * time.Second

// submit submits job, prints its reply and returns the exit code.
// Ctrl-C (ctx) or --timeout cancels the request fleet-wide: nobody should
// pay for an answer nobody reads. After Ctrl-C ask prints the reply to its
// cancelled event, for up to interruptedWait; a cancel that failed is
// reported at once, with exit 1.
func (a *asker) submit(ctx context.Context, job protocol.Job) int {
	readCtx, cancelRead := a.withTimeout(context.Background())
	defer cancelRead()
	cancelRequest := func() error {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return a.pub.Cancel(cctx, job.Tenant, job.ID)
	}
	submitCtx, cancelSubmit := context.WithCancel(readCtx)
	defer cancelSubmit()
	stopSubmit := context.AfterFunc(ctx, cancelSubmit)
	reply, err := a.pub.Submit(submitCtx, job)
	stopSubmit()
	if err != nil {
		switch {
		case ctx.Err() != nil: // Ctrl-C; the job may have been stored
			return a.gaveUp("interrupted while submitting", cancelRequest(), ExitCancelled)
		case timedOut(readCtx):
			return a.gaveUp(fmt.Sprintf("timed out after %s", a.f.timeout), cancelRequest(), ExitFailed)
		}
		return a.failed(err)
	}
	defer reply.Stop()
	if reply.Duplicate() {
		// Asked again under an ID whose job runs (or waits) with nothing
		// stored yet: follow it as ask does a running one, and never
		// cancel it on a timeout.
		reply.Stop()
		fmt.Fprintf(a.io.Err, "chatfleet ask: request %s/%s is already running; following its reply\n", job.Tenant, job.ID)
		return a.follow(ctx, job.Tenant, job.ID)
	}
	interrupted, stopHandler := onInterrupt(ctx, cancelRequest, cancelRead)
	defer stopHandler()
	code, err := a.print(readCtx, reply)
	if err == nil {
		return code
	}
	select {
	case cerr := <-interrupted:
		return a.gaveUp("interrupted", cerr, ExitCancelled)
	default:
	}
	if timedOut(readCtx) {
		return a.gaveUp(fmt.Sprintf("timed out after %s", a.f.timeout), cancelRequest(), ExitFailed)
	}
	return a.failed(err)
}

// onInterrupt handles Ctrl-C (ctx ending) while submit reads the reply:
// it cancels the request with cancelRequest and sends the outcome on
// interrupted. When the cancel failed it stops the reading (cancelRead)
// at once; otherwise it lets the reply's cancelled event arrive for up to
// interruptedWait. stop, called when submit returns, ends the handler,
// waiting for it if it started.
func onInterrupt(ctx context.Context, cancelRequest func() error, cancelRead context.CancelFunc) (interrupted <-chan error, stop func()) {
	var (
		outcome = make(chan error, 1) // the cancel's outcome after Ctrl-C
		handled = make(chan struct{}) // closed when the Ctrl-C handler has returned
		done    = make(chan struct{}) // closed when submit returns
	)
	stopHandler := context.AfterFunc(ctx, func() { // waited for by stop
		defer close(handled)
		err := cancelRequest()
		outcome <- err
		if err != nil && !errors.Is(err, publisher.ErrAlreadyFinished) {
			cancelRead() // the cancelled event is not coming
			return
		}
		wait := time.NewTimer(interruptedWait)
		defer wait.Stop()
		select {
		case <-wait.C:
			cancelRead()
		case <-done:
		}
	})
	return outcome, func() {
		close(done)
		if !stopHandler() {
			<-handled // it started
		}
	}
}

// follow prints the reply of a request this ask did not submit. Ctrl-C or
// --timeout stops following; the request is not cancelled.
func (a *asker) follow(ctx context.Context, tenant, id string) int {
	readCtx, cancel := a.withTimeout(ctx)
	defer cancel()
	reply, err := a.pub.Attach(readCtx, tenant, id)
	if err == nil {
		defer reply.Stop()
		var code int
		if code, err = a.print(readCtx, reply); err == nil {
			return code
		}
	}
	switch {
	case ctx.Err() != nil:
		a.stderr("stopped following; the request goes on")
	case timedOut(readCtx):
		a.stderr(fmt.Sprintf("timed out after %s; the request goes on", a.f.timeout))
	default:
		return a.failed(err)
	}
	return ExitFailed
}

// withTimeout bounds ctx by --timeout, when given.
func (a *asker) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if a.f.timeout > 0 {
		return context.WithTimeout(ctx, a.f.timeout)
	}
	return context.WithCancel(ctx)
}

// timedOut reports whether --timeout ended readCtx.
func timedOut(readCtx context.Context) bool {
	return errors.Is(readCtx.Err(), context.DeadlineExceeded)
}

// gaveUp reports why ask stopped before the request ended (why) and what
// became of the request, given the error of cancelling it: cancelled
// (exit code ifCancelled), finished before the cancel, or not cancelled.
func (a *asker) gaveUp(why string, cancelErr error, ifCancelled int) int {
	switch {
	case cancelErr == nil:
		a.stderr(why + "; the request was cancelled")
		return ifCancelled
	case errors.Is(cancelErr, publisher.ErrAlreadyFinished):
		a.stderr(why + "; the request had already finished")
	default:
		a.stderr(fmt.Sprintf("%s; cancelling the request failed, it may go on: %v", why, a.redact(cancelErr)))
	}
	return ExitFailed
}

// failed reports err: exit 1.
func (a *asker) failed(err error) int {
	a.stderr(a.redact(err).Error())
	return ExitFailed
}

// stderr ends the answer's line and prints msg as ask's.
func (a *asker) stderr(msg string) {
	a.out.endLine()
	fmt.Fprintln(a.io.Err, "chatfleet ask:", msg)
}

// print prints the reply as it streams. On a terminal event it returns the
// exit code and a nil error; err is why reading stopped before one.
// Events of types it does not know (a newer worker's) print nothing, as
// the protocol's extension policy asks; --json prints every event.
func (a *asker) print(ctx context.Context, reply *publisher.Reply) (code int, err error) {
	var toolCalls []protocol.ToolCall
	var fleetTools toolLines
	for ev, err := range reply.Events(ctx) {
		if err != nil {
			return ExitFailed, err
		}
		if a.f.json {
			fmt.Fprintf(a.out, "%s\n", reply.Raw())
		}
		switch ev.Type {
		case protocol.EventChunk:
			toolCalls = protocol.MergeToolCalls(toolCalls, ev.ToolCalls)
			if !a.f.json {
				// A refusal is what the model said instead of an answer;
				// reasoning is not the answer (--json shows it).
				fmt.Fprint(a.out, ev.Content, ev.Refusal)
			}
		case protocol.EventTool:
			// The fleet's tool calls go to stderr, as the other notes do:
			// stdout stays the answer.
			if line := fleetTools.line(ev.Tool); line != "" && !a.f.json {
				a.out.endLine()
				fmt.Fprintln(a.io.Err, line)
			}
		case protocol.EventReset:
			toolCalls = nil
			fleetTools.reset()
			if !a.f.json {
				a.out.endLine()
				fmt.Fprintln(a.io.Err, "[reset: a worker failed over; the answer starts again]")
			}
		case protocol.EventDone:
			if !a.f.json {
				for _, c := range toolCalls {
					fmt.Fprintf(a.out, "\n[tool call %s] %s(%s)", c.ID, c.Function.Name, c.Function.Arguments)
				}
				fmt.Fprintln(a.out)
			}
			return ExitOK, nil
		case protocol.EventError:
			if !a.f.json {
				a.out.endLine()
				fmt.Fprintf(a.io.Err, "error: %v\n", ev.Error)
			}
			return ExitFailed, nil
		case protocol.EventCancelled:
			if !a.f.json {
				a.out.endLine()
				fmt.Fprintln(a.io.Err, "cancelled")
			}
			return ExitCancelled, nil
		}
	}
	return ExitFailed, errors.New("the reply ended without a terminal event")
}

// lineWriter writes the answer and remembers whether its last line is
// open, so a message on stderr never continues the answer's line.
type lineWriter struct {
	w       io.Writer
	midLine bool
}

func (l *lineWriter) Write(p []byte) (int, error) {
	if len(p) > 0 {
		l.midLine = p[len(p)-1] != '\n'
	}
	return l.w.Write(p)
}

// endLine ends the answer's line if it is open.
func (l *lineWriter) endLine() {
	if l.midLine {
		_, _ = l.Write([]byte{'\n'})
	}
}
