package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/chatfleet/chatfleet/internal/telemetry"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/subjects"
)

type askFlags struct {
	model, tenant, system, id string
	temperature               float64
	maxTokens                 int
	noDedupe, noCache, json   bool
	timeout                   time.Duration
}

func runAsk(ctx context.Context, args []string, io IO) int {
	var f askFlags
	fs := flag.NewFlagSet("ask", flag.ContinueOnError)
	fs.SetOutput(io.Err)
	fs.StringVar(&f.model, "model", "", "model (default: the worker's CHATFLEET_MODEL)")
	fs.StringVar(&f.tenant, "tenant", protocol.DefaultTenant, "tenant")
	fs.StringVar(&f.system, "system", "", "system prompt")
	fs.Float64Var(&f.temperature, "temperature", -1, "sampling temperature 0-2 (default: the upstream's)")
	fs.IntVar(&f.maxTokens, "max-tokens", 0, "most tokens to generate (default: the upstream's)")
	fs.BoolVar(&f.noDedupe, "no-dedupe", false, "do not share a generation with identical requests")
	fs.BoolVar(&f.noCache, "no-cache", false, "neither read nor write the answer cache")
	fs.StringVar(&f.id, "id", "", "request ID (default: a fresh random one)")
	fs.BoolVar(&f.json, "json", false, "print every reply event as one JSON line, exactly as received")
	fs.DurationVar(&f.timeout, "timeout", 0, "give up after this long (default: none)")
	fs.Usage = func() {
		fmt.Fprintln(io.Err, "Usage: chatfleet ask [flags] PROMPT   (the prompt may also come on stdin)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	prompt, err := readPrompt(fs.Args(), io.In)
	if err != nil {
		fmt.Fprintln(io.Err, "chatfleet ask:", err)
		return ExitUsage
	}
	job := f.job(prompt)
	if err := validNames(job); err != nil {
		fmt.Fprintln(io.Err, "chatfleet ask:", err)
		return ExitUsage
	}

	env, _, nc, code := connect(io, "ask")
	if code != ExitOK {
		return code
	}
	defer nc.Close()
	tel, err := telemetry.Setup(ctx, "chatfleet-ask", protocol.NewID())
	if err != nil {
		fmt.Fprintln(io.Err, "chatfleet ask:", err)
		return ExitFailed
	}
	defer shutdownTelemetry(tel)
	pub, err := publisher.New(nc, publisher.WithPrefix(env.Prefix), publisher.WithTracerProvider(tel.Tracer))
	if err != nil {
		fmt.Fprintln(io.Err, "chatfleet ask:", err)
		return ExitUsage
	}
	// Reading goes on after Ctrl-C, until the cancelled event arrives; only
	// --timeout ends it early.
	readCtx := context.Background()
	if f.timeout > 0 {
		var cancel context.CancelFunc
		readCtx, cancel = context.WithTimeout(readCtx, f.timeout)
		defer cancel()
	}
	submitCtx, cancelSubmit := context.WithCancel(readCtx)
	defer cancelSubmit()
	stopSubmit := context.AfterFunc(ctx, cancelSubmit)
	reply, err := pub.Submit(submitCtx, job)
	stopSubmit()
	if err != nil {
		fmt.Fprintln(io.Err, "chatfleet ask:", err)
		return ExitFailed
	}
	defer reply.Stop()
	// Ctrl-C, or giving up at --timeout, cancels the request fleet-wide:
	// nobody should pay for an answer nobody reads.
	cancelRequest := func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = pub.Cancel(cctx, reply.Tenant(), reply.ID())
	}
	defer context.AfterFunc(ctx, cancelRequest)()
	code = printReply(readCtx, reply, f.json, io)
	if readCtx.Err() != nil && ctx.Err() == nil {
		cancelRequest()
	}
	return code
}

// validNames checks the tenant and ID before anything connects.
func validNames(job protocol.Job) error {
	if err := subjects.ValidName("tenant", job.Tenant); err != nil {
		return err
	}
	if job.ID != "" {
		return subjects.ValidName("id", job.ID)
	}
	return nil
}

func (f *askFlags) job(prompt string) protocol.Job {
	job := protocol.Job{ID: f.id, Tenant: f.tenant, Model: f.model}
	if f.system != "" {
		job.Messages = append(job.Messages, protocol.Message{Role: protocol.RoleSystem, Content: protocol.TextContent(f.system)})
	}
	job.Messages = append(job.Messages, protocol.Message{Role: protocol.RoleUser, Content: protocol.TextContent(prompt)})
	if f.temperature >= 0 {
		job.Temperature = protocol.Float(f.temperature)
	}
	if f.maxTokens > 0 {
		job.MaxTokens = protocol.Int(f.maxTokens)
	}
	if f.noDedupe {
		job.Dedupe = protocol.Bool(false)
	}
	if f.noCache {
		job.Cache = protocol.Bool(false)
	}
	return job
}

func readPrompt(args []string, in io.Reader) (string, error) {
	if len(args) > 0 && !(len(args) == 1 && args[0] == "-") {
		return strings.Join(args, " "), nil
	}
	if in == nil {
		return "", errors.New("no prompt: give it as arguments or on stdin")
	}
	b, err := io.ReadAll(bufio.NewReader(in))
	if err != nil {
		return "", err
	}
	prompt := strings.TrimSpace(string(b))
	if prompt == "" {
		return "", errors.New("no prompt: give it as arguments or on stdin")
	}
	return prompt, nil
}

// printReply prints the reply as it streams and returns the exit code.
func printReply(ctx context.Context, reply *publisher.Reply, asJSON bool, io IO) int {
	var toolCalls []protocol.ToolCall
	for ev, err := range reply.Events(ctx) {
		if err != nil {
			fmt.Fprintln(io.Err, "\nchatfleet ask:", err)
			return ExitFailed
		}
		if asJSON {
			fmt.Fprintf(io.Out, "%s\n", reply.Raw())
		}
		switch ev.Type {
		case protocol.EventChunk:
			toolCalls = protocol.MergeToolCalls(toolCalls, ev.ToolCalls)
			if !asJSON {
				// A refusal is what the model said instead of an answer;
				// reasoning is not the answer (--json shows it).
				fmt.Fprint(io.Out, ev.Content, ev.Refusal)
			}
		case protocol.EventReset:
			toolCalls = nil
			if !asJSON {
				fmt.Fprintln(io.Err, "\n[reset: a worker failed over; the answer starts again]")
			}
		case protocol.EventDone:
			if !asJSON {
				for _, c := range toolCalls {
					fmt.Fprintf(io.Out, "\n[tool call %s] %s(%s)", c.ID, c.Function.Name, c.Function.Arguments)
				}
				fmt.Fprintln(io.Out)
			}
			return ExitOK
		case protocol.EventError:
			if !asJSON {
				fmt.Fprintf(io.Err, "\nerror: %v\n", ev.Error)
			}
			return ExitFailed
		case protocol.EventCancelled:
			if !asJSON {
				fmt.Fprintln(io.Err, "\ncancelled")
			}
			return ExitCancelled
		}
	}
	return ExitFailed
}
