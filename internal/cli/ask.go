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
)

type askFlags struct {
	model, tenant, system, id string
	tools                     string // --tools: fleet tools, comma-separated
	temperature               float64
	maxTokens                 int
	noDedupe, noCache, json   bool
	timeout                   time.Duration
	set                       map[string]bool // flags given on the command line
}

func runAsk(ctx context.Context, args []string, io IO) int {
	var f askFlags
	fs := f.flagSet(io.Err)
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	f.set = map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	if f.timeout < 0 {
		fmt.Fprintln(io.Err, "chatfleet ask: --timeout must not be negative")
		return ExitUsage
	}
	prompt, err := readPrompt(fs.Args(), io.In)
	if err != nil {
		fmt.Fprintln(io.Err, "chatfleet ask:", err)
		return ExitUsage
	}
	job := f.job(prompt)
	if err := checkJob(job); err != nil {
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
	pub, err := publisher.New(nc, append(env.Publisher(), publisher.WithTracerProvider(tel.Tracer))...)
	if err != nil {
		fmt.Fprintln(io.Err, "chatfleet ask:", err)
		return ExitUsage
	}
	a := &asker{f: &f, pub: pub, io: io, out: &lineWriter{w: io.Out}, redact: env.Redact}

	if f.set["id"] {
		// An ID that already has a reply is not asked again: after the
		// duplicate window the fleet would refuse it (duplicate_id), within
		// it the stream would drop it. Show the reply it has.
		if ended, found := storedReply(ctx, pub, job.Tenant, job.ID); found {
			what := "is already running; following its reply"
			if ended {
				what = "already ran; showing its stored reply (ask with a new --id to ask again)"
			}
			fmt.Fprintf(io.Err, "chatfleet ask: request %s/%s %s\n", job.Tenant, job.ID, what)
			return a.follow(ctx, job.Tenant, job.ID)
		}
	}
	return a.submit(ctx, job)
}

// flagSet defines ask's flags, which parse into f; usage and errors go to
// stderr.
func (f *askFlags) flagSet(stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("ask", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.model, "model", "", "model (default: the worker's CHATFLEET_MODEL)")
	fs.StringVar(&f.tenant, "tenant", protocol.DefaultTenant, "tenant")
	fs.StringVar(&f.system, "system", "", "system prompt")
	fs.Float64Var(&f.temperature, "temperature", 0, "sampling temperature 0-2 (default: the upstream's)")
	fs.IntVar(&f.maxTokens, "max-tokens", 0, "most tokens to generate, at least 1 (default: the upstream's)")
	fs.StringVar(&f.tools, "tools", "", "fleet tools the model may call, comma-separated (e.g. calculator,clock: `chatfleet dev` serves these)")
	fs.BoolVar(&f.noDedupe, "no-dedupe", false, "do not share a generation with identical requests")
	fs.BoolVar(&f.noCache, "no-cache", false, "neither read nor write the answer cache")
	fs.StringVar(&f.id, "id", "", "request ID (default: a fresh random one); the reply of an ID that already ran is shown, not asked again")
	fs.BoolVar(&f.json, "json", false, "print every reply event as one JSON line, exactly as received")
	fs.DurationVar(&f.timeout, "timeout", 0, "give up (and cancel the request) after this long (default: none)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: chatfleet ask [flags] PROMPT   (the prompt may also come on stdin)")
		fs.PrintDefaults()
	}
	return fs
}

// storedReply reports whether the replies stream holds events of
// tenant/id (found) and whether the last one ends the request (ended). A
// lookup that fails counts as not found: the submit reports the problem.
func storedReply(ctx context.Context, pub *publisher.Publisher, tenant, id string) (ended, found bool) {
	ev, found, err := pub.LastEvent(ctx, tenant, id)
	return found && err == nil && ev.Type.Terminal(), found
}

// checkJob validates what the command line set, as the publisher would,
// so that a bad flag value is a usage error (exit 2), found before
// anything connects, not a failed request.
func checkJob(job protocol.Job) error {
	check := job
	check.Normalize("-") // the model may be left to the worker
	err := check.Validate(protocol.Limits{MaxJobBytes: 1 << 30, MaxMessages: 1 << 30})
	var perr *protocol.Error
	if !errors.As(err, &perr) {
		return err
	}
	flags := map[string]string{"tenant": "--tenant", "id": "--id", "model": "--model", "temperature": "--temperature", "max_tokens": "--max-tokens", "fleet_tools": "--tools"}
	if name, ok := flags[perr.Field]; ok {
		return fmt.Errorf("%s: %s", name, perr.Message)
	}
	return perr
}

func (f *askFlags) job(prompt string) protocol.Job {
	job := protocol.Job{ID: f.id, Tenant: f.tenant, Model: f.model}
	if job.ID == "" {
		// Chosen here, not by the publisher, so a submit cut short by
		// --timeout or Ctrl-C can still be cancelled by its ID.
		job.ID = protocol.NewID()
	}
	if f.system != "" {
		job.Messages = append(job.Messages, protocol.Message{Role: protocol.RoleSystem, Content: protocol.TextContent(f.system)})
	}
	job.Messages = append(job.Messages, protocol.Message{Role: protocol.RoleUser, Content: protocol.TextContent(prompt)})
	if f.set["temperature"] {
		job.Temperature = protocol.Float(f.temperature)
	}
	if f.set["max-tokens"] {
		job.MaxTokens = protocol.Int(f.maxTokens)
	}
	for name := range strings.SplitSeq(f.tools, ",") {
		if name = strings.TrimSpace(name); name != "" {
			job.FleetTools = append(job.FleetTools, name)
		}
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
