package harness

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
)

// LargeAnswerResult is one answer of LargeAnswerMB streamed by an upstream
// as fast as the socket takes it, in deltas of LargeDeltaBytes, through
// one worker to the producer.
type LargeAnswerResult struct {
	AnswerBytes     int64   `json:"answer_bytes"`
	DeltaBytes      int     `json:"delta_bytes"`
	Received        int64   `json:"received_bytes"` // content the producer got, checked byte for byte
	ChunkEvents     int     `json:"chunk_events"`
	MaxEventOutput  int     `json:"max_event_output_bytes"` // the largest chunk's output (the cap counts this)
	MaxEventBytes   int     `json:"max_event_bytes"`        // the largest event, encoded
	UpstreamCalls   int     `json:"upstream_calls"`
	Seconds         float64 `json:"seconds"` // submit → done
	RSSBefore       int64   `json:"rss_before_bytes"`
	RSSPeak         int64   `json:"rss_peak_bytes"` // VmHWM, reset after the warm-up
	RSSGrowth       int64   `json:"rss_growth_bytes"`
	GrowthPerAnswer float64 `json:"rss_growth_per_answer_byte"` // RSSGrowth ÷ AnswerBytes
	WorkerCPUS      float64 `json:"worker_cpu_s"`
	Note            string  `json:"note,omitempty"`
}

// largeAnswer streams one large answer and measures the worker's peak
// memory and CPU for it, and the size of every event the producer gets.
func (r *runner) largeAnswer(ctx context.Context) error {
	sz := r.cfg.Sizes
	delta := max(1, sz.LargeDeltaBytes)
	n := int(int64(sz.LargeAnswerMB) << 20 / int64(delta))
	up, pattern := largeUpstream(delta, n)
	defer up.Close()
	answer := int64(n) * int64(delta)
	f, err := r.startFleet(ctx, fleetSpec{name: "large-answer", workers: 1, upstream: up.URL(), env: map[string]string{
		"CHATFLEET_MAX_ANSWER_BYTES": strconv.FormatInt(answer+1<<20, 10),
	}})
	if err != nil {
		return err
	}
	defer f.close()
	pid := f.workers[0].pid()
	runLoad(ctx, f.pubs, loadSpec{n: 20, concurrency: 4, job: func(i int) protocol.Job { return userJob(r.prompt("large warm ", i)) }})
	res := LargeAnswerResult{AnswerBytes: answer, DeltaBytes: delta}
	if err := resetPeakRSS(pid); err != nil {
		res.Note = "peak RSS not reset after the warm-up: " + err.Error()
	}
	if res.RSSBefore, err = procRSS(pid); err != nil {
		return err
	}
	cpu0, _ := procCPU(pid)
	calls0 := up.Calls()

	start := time.Now()
	reply, err := f.pubs[0].Submit(ctx, userJob(r.prompt("large answer", 0)))
	if err != nil {
		return err
	}
	defer reply.Stop()
	if err := readLargeAnswer(ctx, reply, pattern, &res); err != nil {
		return err
	}
	res.Seconds = round3(time.Since(start).Seconds())
	if cpu1, err := procCPU(pid); err == nil {
		res.WorkerCPUS = round3((cpu1 - cpu0).Seconds())
	}
	if res.RSSPeak, err = procPeakRSS(pid); err != nil {
		return err
	}
	res.RSSGrowth = res.RSSPeak - res.RSSBefore
	res.GrowthPerAnswer = round3(float64(res.RSSGrowth) / float64(answer))
	res.UpstreamCalls = up.Calls() - calls0
	r.rep.LargeAnswer = &res
	r.progress("   %s in %d B deltas: %.1fs, %d chunk events (largest %s), worker RSS %s → peak %s (%.2f× the answer), %.1fs CPU, %d upstream call(s)",
		mib(answer), delta, res.Seconds, res.ChunkEvents, kib(int64(res.MaxEventOutput)), mib(res.RSSBefore), mib(res.RSSPeak), res.GrowthPerAnswer, res.WorkerCPUS, res.UpstreamCalls)
	if res.Received != answer {
		return fmt.Errorf("received %d bytes of %d", res.Received, answer)
	}
	return nil
}

// largeUpstream returns an upstream that answers a warm-up (a prompt
// holding "warm") with the 16 short tokens, and anything else with n
// deltas of pattern, delta bytes of hex digits.
func largeUpstream(delta, n int) (up *llmtest.Server, pattern string) {
	pattern = strings.Repeat("0123456789abcdef", (delta+15)/16)[:delta]
	tokens := make([]string, n) // one shared string: the upstream holds little
	for i := range tokens {
		tokens[i] = pattern
	}
	up = llmtest.New(llmtest.WithScript(func(req llmtest.Request) llmtest.Reply {
		if strings.Contains(req.LastUserMessage(), "warm") {
			return llmtest.Reply{Tokens: tokens16}
		}
		return llmtest.Reply{Tokens: tokens}
	}))
	return up, pattern
}

// readLargeAnswer reads reply to its terminal event, counting into res
// the chunk events, the largest event and chunk output and the content
// received, which it checks byte for byte against pattern repeated.
func readLargeAnswer(ctx context.Context, reply *publisher.Reply, pattern string, res *LargeAnswerResult) error {
	delta := len(pattern)
	for {
		ev, err := reply.Next(ctx)
		if err != nil {
			return fmt.Errorf("after %d bytes: %w", res.Received, err)
		}
		res.MaxEventBytes = max(res.MaxEventBytes, len(reply.Raw()))
		switch ev.Type {
		case protocol.EventChunk:
			res.ChunkEvents++
			res.MaxEventOutput = max(res.MaxEventOutput, len(ev.Content)+len(ev.Refusal)+len(ev.ReasoningContent))
			for i := 0; i < len(ev.Content); i++ {
				if ev.Content[i] != pattern[(res.Received+int64(i))%int64(delta)] {
					return fmt.Errorf("content differs at byte %d", res.Received+int64(i))
				}
			}
			res.Received += int64(len(ev.Content))
		case protocol.EventError:
			return fmt.Errorf("error event: %v", ev.Error)
		}
		if ev.Type.Terminal() {
			return nil
		}
	}
}
