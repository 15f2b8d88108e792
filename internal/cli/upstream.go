package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/chatfleet/chatfleet/internal/config"
	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/protocol"
)

// Probe prompts of `upstream check`: short answers, bounded.
const (
	probePrompt     = "Reply with the single word: ok"
	probeToolPrompt = "What time is it? Call the get_time tool to find out."
	probeTokens     = 64
	probeToolTokens = 256
	modelsShown     = 8
)

func runUpstream(ctx context.Context, args []string, io IO) int {
	if len(args) > 0 && args[0] == "limits" {
		return runUpstreamLimits(ctx, args[1:], io)
	}
	fs := flag.NewFlagSet("upstream check", flag.ContinueOnError)
	fs.SetOutput(io.Err)
	model := fs.String("model", "", "the model to probe (default: CHATFLEET_MODEL)")
	timeout := fs.Duration("timeout", time.Minute, "how long each probe may take")
	fs.Usage = func() {
		fmt.Fprintln(io.Err, "Usage: chatfleet upstream check [--model M] [--timeout 1m]\n\n"+
			"Probes the configured upstream (CHATFLEET_LLM_BASE_URL) with two tiny requests and lists what it supports.\n\n"+
			"chatfleet upstream limits set|show|rm: the upstream's fleet-wide limits (chatfleet upstream limits for more).")
		fs.PrintDefaults()
	}
	if len(args) == 0 || args[0] != "check" {
		fs.Usage()
		return ExitUsage
	}
	if err := fs.Parse(args[1:]); err != nil {
		return ExitUsage
	}
	if fs.NArg() != 0 || *timeout <= 0 {
		fs.Usage()
		return ExitUsage
	}
	env, ok := loadEnv(io, "upstream check")
	if !ok {
		return ExitUsage
	}
	if err := env.CheckUpstream(); err != nil {
		fmt.Fprintln(io.Err, "chatfleet upstream check:", err)
		return ExitUsage
	}
	if *model == "" {
		*model = env.Model
	}
	p := &prober{env: env, model: *model, timeout: *timeout}
	rep, code := p.check(ctx)
	if err := rep.print(io.Out); err != nil {
		fmt.Fprintln(io.Err, "chatfleet upstream check:", err)
		return ExitFailed
	}
	return code
}

// prober runs `upstream check`'s probes against the configured upstream.
type prober struct {
	env     config.Env
	model   string
	timeout time.Duration
}

// probe is what one streamed request showed.
type probe struct {
	content, reasoning strings.Builder
	calls              []string // tool names called
	finish             string
	usage              *protocol.Usage
	info               llm.StreamInfo
	err                error
}

// report is the check's result, one line per item.
type report [][2]string

func (r *report) add(item, format string, args ...any) {
	*r = append(*r, [2]string{item, fmt.Sprintf(format, args...)})
}

func (r report) print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, l := range r {
		fmt.Fprintf(tw, "%s\t%s\n", l[0], l[1])
	}
	return tw.Flush()
}

// client returns a client for the configured upstream that neither
// retries nor trips a breaker: the check reports what one request does.
func (p *prober) client(noStreamOptions bool) (*llm.Client, error) {
	cfg := p.env.LLM()
	cfg.MaxRetries, cfg.BreakerFailures = -1, -1
	cfg.NoStreamOptions = noStreamOptions
	return llm.New(cfg)
}

// check probes the upstream: its models, a streamed answer, the same
// without stream_options when the upstream refuses them, and a tool
// call. The exit code is ExitFailed when jobs would fail as configured.
func (p *prober) check(ctx context.Context) (report, int) {
	var rep report
	key := "none"
	if p.env.LLMAPIKey != "" {
		key = "set"
	}
	base := p.env.LLMBaseURL
	if base == "" {
		base = llm.DefaultBaseURL
	}
	rep.add("upstream", "%s (API key: %s)", config.RedactURL(base), key)
	rep.add("model", "%s", p.model)
	noOptions := !p.env.LLMStreamOptions
	c, err := p.client(noOptions)
	if err != nil {
		rep.add("configuration", "INVALID: %s", p.env.Redact(err))
		return rep, ExitUsage
	}
	p.models(ctx, c, &rep)

	code := ExitOK
	basic := p.probe(ctx, c, p.job(probePrompt, probeTokens))
	switch {
	case noOptions:
		rep.add("stream_options", "not sent (CHATFLEET_LLM_STREAM_OPTIONS=false)")
	case errors.Is(basic.err, llm.ErrStreamOptionsRefused):
		rep.add("stream_options", "REFUSED: %s", p.message(basic.err))
		code = ExitFailed
		if c, err = p.client(true); err == nil {
			basic = p.probe(ctx, c, p.job(probePrompt, probeTokens))
		}
	default:
		if basic.err == nil {
			rep.add("stream_options", "accepted")
		}
	}
	if basic.err != nil {
		rep.add("streaming", "FAILED: %s", p.message(basic.err))
		return rep, ExitFailed
	}
	p.streaming(basic, &rep)

	tools := p.probe(ctx, c, p.toolJob())
	switch {
	case tools.err != nil:
		rep.add("tool calls", "FAILED: %s", p.message(tools.err))
	case len(tools.calls) > 0:
		rep.add("tool calls", "yes: called %s", strings.Join(tools.calls, ", "))
	default:
		rep.add("tool calls", "no: answered with text instead of calling get_time (finish_reason %q)", tools.finish)
	}
	if basic.reasoning.Len() > 0 || tools.reasoning.Len() > 0 {
		rep.add("reasoning", "yes: streams its reasoning (reasoning_content or reasoning)")
	} else {
		rep.add("reasoning", "none seen (not a reasoning model, or it does not stream its reasoning)")
	}
	return rep, code
}

// models reports the upstream's model list.
func (p *prober) models(ctx context.Context, c *llm.Client, rep *report) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	ids, err := c.Models(ctx)
	if err != nil {
		rep.add("models", "not listed: %s", p.message(err))
		return
	}
	shown := ids
	if len(shown) > modelsShown {
		shown = shown[:modelsShown]
	}
	line := fmt.Sprintf("%d listed: %s", len(ids), strings.Join(shown, ", "))
	if len(ids) > len(shown) {
		line += fmt.Sprintf(", … (%d more)", len(ids)-len(shown))
	}
	found := false
	for _, id := range ids {
		found = found || id == p.model
	}
	if !found {
		line += fmt.Sprintf("; %s is not among them", p.model)
	}
	rep.add("models", "%s", line)
}

// streaming reports how the basic probe was streamed.
func (p *prober) streaming(b *probe, rep *report) {
	if b.info.NotStreamed {
		rep.add("streaming", "no: answered with one JSON chat.completion; chatfleet takes it as one chunk")
	} else {
		rep.add("streaming", "yes: server-sent events")
	}
	if b.info.Comments > 0 {
		rep.add("keep-alives", "%d SSE comments; they keep a stream alive (CHATFLEET_LLM_IDLE_TIMEOUT), the processing timeout still ends it", b.info.Comments)
	}
	if b.info.NoFinishReason {
		rep.add("finish_reason", "never sent; chatfleet reads the end of the stream as %q", b.finish)
	} else {
		rep.add("finish_reason", "%q", b.finish)
	}
	if u := b.usage; u != nil {
		rep.add("usage", "in the stream (%d prompt + %d completion tokens)", u.PromptTokens, u.CompletionTokens)
	} else {
		rep.add("usage", "not sent: done events will carry no usage")
	}
}

func (p *prober) job(prompt string, tokens int) *protocol.Job {
	return &protocol.Job{
		V: protocol.Version, ID: "upstream-check", Tenant: "default", Model: p.model,
		Messages:            []protocol.Message{{Role: protocol.RoleUser, Content: protocol.TextContent(prompt)}},
		MaxCompletionTokens: &tokens,
	}
}

func (p *prober) toolJob() *protocol.Job {
	j := p.job(probeToolPrompt, probeToolTokens)
	j.Tools = []protocol.Tool{{Type: "function", Function: protocol.FunctionSpec{
		Name: "get_time", Description: "Returns the current time.",
		Parameters: json.RawMessage(`{"type":"object","properties":{}}`),
	}}}
	j.ToolChoice = json.RawMessage(`"auto"`)
	return j
}

// probe streams job to its end.
func (p *prober) probe(ctx context.Context, c *llm.Client, job *protocol.Job) *probe {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	r := &probe{}
	s, err := c.Stream(ctx, job)
	if err != nil {
		r.err = err
		return r
	}
	defer s.Close()
	for {
		d, err := s.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			r.err = err
			break
		}
		r.content.WriteString(d.Content)
		r.reasoning.WriteString(d.ReasoningContent)
		for _, tc := range d.ToolCalls {
			if tc.Function.Name != "" {
				r.calls = append(r.calls, tc.Function.Name)
			}
		}
		if d.FinishReason != "" {
			r.finish = d.FinishReason
		}
		if d.Usage != nil {
			r.usage = d.Usage
		}
	}
	r.info = s.Info()
	return r
}

// message describes a failed probe: its code, status and message, never
// a secret.
func (p *prober) message(err error) string {
	var e *llm.Error
	if !errors.As(err, &e) {
		return p.env.Redact(err).Error()
	}
	s := string(e.Code)
	if e.Status != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.Status)
	}
	return s + ": " + p.env.Redact(errors.New(e.Message)).Error()
}
