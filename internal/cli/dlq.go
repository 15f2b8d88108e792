package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/subjects"
)

const dlqUsage = `Usage:
  chatfleet dlq ls [--tenant T] [--json]   list dead-lettered jobs, oldest first
  chatfleet dlq show SEQ                   one dead letter: why, and the job as published
  chatfleet dlq replay [--keep] SEQ        submit the job again under a new request ID
                                           (and drop the dead letter, unless --keep)`

// runDLQ inspects and replays the dead-letter stream.
func runDLQ(ctx context.Context, args []string, io IO) int {
	if len(args) == 0 {
		fmt.Fprintln(io.Err, dlqUsage)
		return ExitUsage
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("dlq "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Err)
	fs.Usage = func() { fmt.Fprintln(io.Err, dlqUsage) }
	tenant := fs.String("tenant", "", "only this tenant's dead letters (ls)")
	asJSON := fs.Bool("json", false, "one JSON object per dead letter (ls)")
	keep := fs.Bool("keep", false, "keep the dead letter after replaying it (replay)")
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	seq, code := dlqArgs(sub, fs, *tenant, io)
	if code != ExitOK {
		return code
	}

	_, names, nc, code := connect(io, "dlq")
	if code != ExitOK {
		return code
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Fprintln(io.Err, "chatfleet dlq:", err)
		return ExitFailed
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, names.DeadLetterStream())
	if err != nil {
		fmt.Fprintf(io.Err, "chatfleet dlq: stream %s: %v (%s)\n", names.DeadLetterStream(), err, topologyHint)
		return ExitFailed
	}
	switch sub {
	case "ls":
		err = listDeadLetters(ctx, js, names, *tenant, *asJSON, io)
	case "show":
		err = showDeadLetter(ctx, stream, seq, io)
	default:
		err = replayDeadLetter(ctx, js, stream, names, seq, *keep, io)
	}
	if err != nil {
		fmt.Fprintln(io.Err, "chatfleet dlq:", err)
		return ExitFailed
	}
	return ExitOK
}

// dlqArgs checks the arguments of subcommand sub, whose flags fs has
// parsed: ls takes none (and a valid --tenant), show and replay the
// sequence number of a dead letter, which it returns. The code is
// ExitUsage after a usage error it reported.
func dlqArgs(sub string, fs *flag.FlagSet, tenant string, io IO) (seq uint64, code int) {
	switch sub {
	case "ls":
		if fs.NArg() != 0 {
			fs.Usage()
			return 0, ExitUsage
		}
		if tenant != "" {
			if err := subjects.ValidName("tenant", tenant); err != nil {
				fmt.Fprintln(io.Err, "chatfleet dlq: --tenant:", err)
				return 0, ExitUsage
			}
		}
	case "show", "replay":
		var err error
		if fs.NArg() != 1 {
			fs.Usage()
			return 0, ExitUsage
		}
		if seq, err = strconv.ParseUint(fs.Arg(0), 10, 64); err != nil || seq == 0 {
			fmt.Fprintf(io.Err, "chatfleet dlq: %q is not a dead-letter sequence number (see chatfleet dlq ls)\n", fs.Arg(0))
			return 0, ExitUsage
		}
	default:
		fmt.Fprintf(io.Err, "chatfleet dlq: unknown subcommand %q\n\n%s\n", sub, dlqUsage)
		return 0, ExitUsage
	}
	return seq, ExitOK
}

// deadLetterRow is what ls shows of one dead letter.
type deadLetterRow struct {
	Seq        uint64 `json:"seq"`
	Time       string `json:"time"`
	Tenant     string `json:"tenant,omitempty"`
	Request    string `json:"request,omitempty"`
	Code       string `json:"code"`
	Field      string `json:"field,omitempty"`
	Deliveries int    `json:"deliveries"`
	Reason     string `json:"reason"`
	Subject    string `json:"subject"`
}

func listDeadLetters(ctx context.Context, js jetstream.JetStream, names subjects.Names, tenant string, asJSON bool, io IO) error {
	filter := names.AllDeadLetters()
	if tenant != "" {
		filter = names.DeadLetter(tenant)
	}
	// Headers only: ls never needs the jobs themselves.
	cons, err := js.OrderedConsumer(ctx, names.DeadLetterStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverAllPolicy, HeadersOnly: true,
	})
	if err != nil {
		return err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return err
	}
	var rows []deadLetterRow
	for left := info.NumPending; left > 0; {
		batch, err := cons.Fetch(int(min(left, 256)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return err
		}
		for msg := range batch.Messages() {
			meta, err := msg.Metadata()
			if err != nil {
				return err
			}
			h := msg.Headers()
			deliveries, _ := strconv.Atoi(h.Get(protocol.DeadLetterDeliveries)) // 0 when unknown
			rows = append(rows, deadLetterRow{
				Seq: meta.Sequence.Stream, Time: h.Get(protocol.DeadLetterTime), Tenant: h.Get(protocol.DeadLetterTenant),
				Request: h.Get(protocol.DeadLetterRequest), Code: h.Get(protocol.DeadLetterCode), Field: h.Get(protocol.DeadLetterField),
				Deliveries: deliveries, Reason: h.Get(protocol.DeadLetterReason), Subject: h.Get(protocol.DeadLetterSubject),
			})
			left--
		}
		if err := batch.Error(); err != nil {
			return err
		}
	}
	return printRows(io, rows, asJSON, "no dead letters", "SEQ\tTIME\tTENANT\tREQUEST\tCODE\tFIELD\tDELIVERIES\tREASON",
		func(r deadLetterRow) string {
			return fmt.Sprintf("%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s", r.Seq, r.Time, r.Tenant, r.Request, r.Code, r.Field, r.Deliveries, r.Reason)
		})
}

func getDeadLetter(ctx context.Context, stream jetstream.Stream, seq uint64) (*jetstream.RawStreamMsg, error) {
	msg, err := stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("no dead letter %d (see chatfleet dlq ls)", seq)
	}
	return msg, err
}

func showDeadLetter(ctx context.Context, stream jetstream.Stream, seq uint64, io IO) error {
	msg, err := getDeadLetter(ctx, stream, seq)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(io.Out, 0, 4, 2, ' ', 0)
	for _, h := range []string{protocol.DeadLetterTime, protocol.DeadLetterTenant, protocol.DeadLetterRequest, protocol.DeadLetterCode,
		protocol.DeadLetterField, protocol.DeadLetterReason, protocol.DeadLetterSubject, protocol.DeadLetterStreamSeq,
		protocol.DeadLetterDeliveries, protocol.DeadLetterWorker} {
		if v := msg.Header.Get(h); v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", h, v)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(io.Out)
	var pretty bytes.Buffer
	if json.Indent(&pretty, msg.Data, "", "  ") == nil {
		_, err = io.Out.Write(append(pretty.Bytes(), '\n'))
	} else {
		_, err = fmt.Fprintf(io.Out, "%s\n", msg.Data)
	}
	return err
}

// replayDeadLetter submits the job again under a new request ID (the old
// ID's reply subject already holds its error) and, unless keep, drops the
// dead letter.
func replayDeadLetter(ctx context.Context, js jetstream.JetStream, stream jetstream.Stream, names subjects.Names, seq uint64, keep bool, io IO) error {
	msg, err := getDeadLetter(ctx, stream, seq)
	if err != nil {
		return err
	}
	var job map[string]json.RawMessage
	if err := json.Unmarshal(msg.Data, &job); err != nil {
		return fmt.Errorf("dead letter %d is not a JSON object; fix the job and submit it yourself", seq)
	}
	subject := msg.Header.Get(protocol.DeadLetterSubject)
	tenant, _, err := names.ParseQueue(subject) // replayed on its priority's subject
	if err != nil {
		return fmt.Errorf("dead letter %d came from %q, not a jobs subject; fix the job and submit it yourself", seq, subject)
	}
	id := protocol.NewID()
	job["id"], _ = json.Marshal(id)
	data, err := json.Marshal(job)
	if err != nil {
		return err
	}
	out := nats.NewMsg(subject)
	out.Data = data
	out.Header.Set(jetstream.MsgIDHeader, protocol.MsgID(tenant, id))
	if _, err := js.PublishMsg(ctx, out, jetstream.WithExpectStream(names.JobsStream())); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	fmt.Fprintf(io.Out, "replayed dead letter %d as %s/%s; its reply: %s\n", seq, tenant, id, names.Reply(tenant, id))
	if keep {
		return nil
	}
	if err := stream.DeleteMsg(ctx, seq); err != nil {
		return fmt.Errorf("replayed, but the dead letter was not removed: %w", err)
	}
	return nil
}
