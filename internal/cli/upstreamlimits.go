package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/config"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/subjects"
)

const upstreamLimitsUsage = `Usage:
  chatfleet upstream limits set [NAME] [--max-streams N] [--requests-per-minute N] [--tokens-per-minute N]
                        set an upstream's fleet-wide limits (0 removes one); every worker applies them at once
  chatfleet upstream limits show [NAME] [--json]
                        its limits, this minute's requests and tokens, its backoff, the streams open now
  chatfleet upstream limits rm [NAME]
                        remove them: workers fall back to their CHATFLEET_FLEET_* variables
NAME is the upstream, "default" (CHATFLEET_LLM_BASE_URL's) when omitted.`

// upstreamLimitsFlags are the flags of `upstream limits`.
type upstreamLimitsFlags struct {
	fs                   *flag.FlagSet
	maxStreams           int
	perMinute, tokensMin int64
	asJSON               bool
	given                map[string]bool
}

// runUpstreamLimits sets, shows and removes an upstream's fleet-wide
// limits in the upstreams bucket.
func runUpstreamLimits(ctx context.Context, args []string, io IO) int {
	if len(args) == 0 || (args[0] != "set" && args[0] != "show" && args[0] != "rm") {
		fmt.Fprintln(io.Err, upstreamLimitsUsage)
		return ExitUsage
	}
	sub, args := args[0], args[1:]
	name := protocol.DefaultUpstream
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	f := &upstreamLimitsFlags{fs: flag.NewFlagSet("upstream limits "+sub, flag.ContinueOnError), given: map[string]bool{}}
	f.fs.SetOutput(io.Err)
	f.fs.Usage = func() { fmt.Fprintln(io.Err, upstreamLimitsUsage) }
	f.fs.IntVar(&f.maxStreams, "max-streams", 0, "most upstream streams at once, fleet-wide (set)")
	f.fs.Int64Var(&f.perMinute, "requests-per-minute", 0, "most upstream calls the fleet starts in a UTC minute (set)")
	f.fs.Int64Var(&f.tokensMin, "tokens-per-minute", 0, "most upstream tokens the fleet uses in a UTC minute (set)")
	f.fs.BoolVar(&f.asJSON, "json", false, "print JSON (show)")
	if err := f.fs.Parse(args); err != nil {
		return ExitUsage
	}
	f.fs.Visit(func(fl *flag.Flag) { f.given[fl.Name] = true })
	if err := subjects.ValidName("upstream", name); err != nil || f.fs.NArg() != 0 || f.maxStreams < 0 || f.perMinute < 0 || f.tokensMin < 0 ||
		(sub == "set" && len(f.given) == 0) {
		if err != nil {
			fmt.Fprintln(io.Err, "chatfleet upstream limits:", err)
		}
		fmt.Fprintln(io.Err, upstreamLimitsUsage)
		return ExitUsage
	}
	env, names, nc, code := connect(io, "upstream limits")
	if code != ExitOK {
		return code
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err == nil {
		err = upstreamLimitsCommand(ctx, js, env, names, sub, name, f, io)
	}
	if err != nil {
		fmt.Fprintln(io.Err, "chatfleet upstream limits:", err)
		return ExitFailed
	}
	return ExitOK
}

func upstreamLimitsCommand(ctx context.Context, js jetstream.JetStream, env config.Env, names subjects.Names, sub, name string, f *upstreamLimitsFlags, io IO) error {
	kv, err := js.KeyValue(ctx, names.UpstreamsBucket())
	if err != nil {
		return fmt.Errorf("bucket %s: %w (%s)", names.UpstreamsBucket(), err, topologyHint)
	}
	switch sub {
	case "set":
		l, err := updateUpstreamLimits(ctx, kv, names.UpstreamKey(name), f)
		if err == nil {
			fmt.Fprintf(io.Out, "upstream %s: %s\n", name, describeUpstreamLimits(l))
		}
		return err
	case "rm":
		if err := kv.Purge(ctx, names.UpstreamKey(name)); err != nil {
			return err
		}
		fmt.Fprintf(io.Out, "upstream %s: limits removed; workers use their CHATFLEET_FLEET_* variables\n", name)
		return nil
	}
	view, err := readUpstreamView(ctx, js, kv, env, names, name)
	if err != nil {
		return err
	}
	if f.asJSON {
		enc := json.NewEncoder(io.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(view)
	}
	source := "the upstreams bucket"
	if !view.InBucket {
		source = "not in the bucket: each worker's CHATFLEET_FLEET_* (this shell's shown)"
	}
	fmt.Fprintf(io.Out, "upstream   %s\nlimits     %s (%s)\n", name, describeUpstreamLimits(view.Limits), source)
	fmt.Fprintf(io.Out, "now        %d streams open (fleet-wide shares held) · this minute %d requests, %d tokens\n",
		view.StreamsHeld, view.MinuteRequests, view.MinuteTokens)
	if view.BackoffUntil != nil {
		fmt.Fprintf(io.Out, "backoff    new calls held until %s; limits scaled by %.2f\n", view.BackoffUntil.Format(time.RFC3339), view.Factor)
	} else {
		fmt.Fprintf(io.Out, "backoff    none; limits scaled by %.2f\n", view.Factor)
	}
	return nil
}

// upstreamView is what `upstream limits show` prints.
type upstreamView struct {
	Name           string                  `json:"name"`
	Limits         protocol.UpstreamLimits `json:"limits"`
	InBucket       bool                    `json:"in_bucket"`
	StreamsHeld    int                     `json:"streams_held"`
	MinuteRequests int64                   `json:"minute_requests"`
	MinuteTokens   int64                   `json:"minute_tokens"`
	Factor         float64                 `json:"factor"`
	BackoffUntil   *time.Time              `json:"backoff_until,omitempty"`
}

// readUpstreamView reads an upstream's entries and counts the stream
// shares held now in the in-flight bucket.
func readUpstreamView(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, env config.Env, names subjects.Names, name string) (*upstreamView, error) {
	now := time.Now()
	v := &upstreamView{Name: name, Limits: env.FleetLimits(), Factor: 1}
	v.Limits.V = protocol.UpstreamVersion
	if e, err := kv.Get(ctx, names.UpstreamKey(name)); err == nil {
		if v.Limits, err = protocol.DecodeUpstreamLimits(e.Value()); err != nil {
			return nil, err
		}
		v.InBucket = true
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, err
	}
	var w protocol.UpstreamWindow
	if err := getJSON(ctx, kv, names.UpstreamWindowKey(name), &w); err != nil {
		return nil, err
	}
	v.MinuteRequests, v.MinuteTokens = w.At(now)
	var b protocol.UpstreamBackoff
	if err := getJSON(ctx, kv, names.UpstreamBackoffKey(name), &b); err != nil {
		return nil, err
	}
	v.Factor = b.Recovered(now)
	if b.Until.After(now) {
		until := b.Until.UTC()
		v.BackoffUntil = &until
	}
	inflight, err := js.KeyValue(ctx, names.InflightBucket())
	if err != nil {
		return nil, err
	}
	keys, err := inflight.ListKeysFiltered(ctx, names.UpstreamShares(name))
	if err != nil {
		return nil, err
	}
	for range keys.Keys() {
		v.StreamsHeld++
	}
	return v, nil
}

// getJSON decodes key's value into dst; a missing key leaves dst alone.
func getJSON(ctx context.Context, kv jetstream.KeyValue, key string, dst any) error {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return json.Unmarshal(e.Value(), dst)
}

// updateUpstreamLimits changes the given limits with compare-and-swap, so
// two operators' changes do not undo each other.
func updateUpstreamLimits(ctx context.Context, kv jetstream.KeyValue, key string, f *upstreamLimitsFlags) (protocol.UpstreamLimits, error) {
	for {
		l := protocol.UpstreamLimits{V: protocol.UpstreamVersion}
		var rev uint64
		e, err := kv.Get(ctx, key)
		switch {
		case err == nil:
			if l, err = protocol.DecodeUpstreamLimits(e.Value()); err != nil {
				return l, err
			}
			rev = e.Revision()
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return l, err
		}
		if f.given["max-streams"] {
			l.MaxStreams = f.maxStreams
		}
		if f.given["requests-per-minute"] {
			l.RequestsPerMinute = f.perMinute
		}
		if f.given["tokens-per-minute"] {
			l.TokensPerMinute = f.tokensMin
		}
		l.V, l.Updated = max(l.V, protocol.UpstreamVersion), time.Now().UTC()
		b, err := json.Marshal(l)
		if err != nil {
			return l, err
		}
		if rev == 0 {
			_, err = kv.Create(ctx, key, b)
		} else {
			_, err = kv.Update(ctx, key, b, rev)
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return l, err
		}
	}
}

// describeUpstreamLimits is an upstream's limits in one line.
func describeUpstreamLimits(l protocol.UpstreamLimits) string {
	limit := func(n int64) string {
		if n <= 0 {
			return "none"
		}
		return fmt.Sprint(n)
	}
	return fmt.Sprintf("max_streams %s · requests_per_minute %s · tokens_per_minute %s",
		limit(int64(l.MaxStreams)), limit(l.RequestsPerMinute), limit(l.TokensPerMinute))
}
