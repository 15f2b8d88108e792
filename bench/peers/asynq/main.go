// Command asynqpeer is the peer stack chatfleet's benchmark compares
// against: what a team would otherwise build. Jobs are asynq tasks on
// Redis; a worker handles each by streaming the answer from an
// OpenAI-compatible upstream with go-openai (the client chatfleet uses)
// and publishing every chunk, then "done", on the job's Redis pub/sub
// channel. The producer pattern-subscribes to the reply channels once,
// before it enqueues anything, and demultiplexes by job ID.
//
// It lives in its own Go module so chatfleet's module never depends on
// asynq or go-redis. The benchmark (`go run ./bench/cmd/chatfleet-bench
// --peer`) builds it and runs it as child processes:
//
//	asynqpeer worker -redis 127.0.0.1:6380 -upstream http://127.0.0.1:8080/v1 -concurrency 64 -poll 1s
//	asynqpeer load   -redis 127.0.0.1:6380 -jobs 20000 -concurrency 256
//
// load prints one JSON object: per-job times to first chunk and to done,
// in nanoseconds, measured at the producer.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	openai "github.com/sashabaranov/go-openai"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: asynqpeer worker|load [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "worker":
		err = worker(os.Args[2:])
	case "load":
		err = load(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "asynqpeer:", err)
		os.Exit(1)
	}
}

// payload is a task's payload.
type payload struct {
	Prompt  string `json:"prompt"`
	Channel string `json:"channel"` // where the reply goes
}

// event is one reply message on the channel.
type event struct {
	Seq     int    `json:"seq"`
	Type    string `json:"type"` // "chunk", "done" or "error"
	Content string `json:"content,omitempty"`
	Error   string `json:"error,omitempty"`
}

const taskType = "chat"

func worker(args []string) error {
	fs := flag.NewFlagSet("worker", flag.ExitOnError)
	addr := fs.String("redis", "127.0.0.1:6379", "Redis address")
	upstream := fs.String("upstream", "", "OpenAI-compatible base URL incl. /v1")
	concurrency := fs.Int("concurrency", 64, "tasks handled at once")
	poll := fs.Duration("poll", 0, "asynq TaskCheckInterval (0: asynq's default, 1s)")
	queue := fs.String("queue", "chat", "asynq queue")
	_ = fs.Parse(args)
	if *upstream == "" {
		return errors.New("-upstream is required")
	}
	rdb := redis.NewClient(&redis.Options{Addr: *addr, PoolSize: *concurrency})
	defer rdb.Close()
	cfg := openai.DefaultConfig("bench")
	cfg.BaseURL = *upstream
	cfg.HTTPClient = &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: *concurrency}}
	oa := openai.NewClientWithConfig(cfg)

	srv := asynq.NewServer(asynq.RedisClientOpt{Addr: *addr}, asynq.Config{
		Concurrency:       *concurrency,
		Queues:            map[string]int{*queue: 1},
		TaskCheckInterval: *poll,
		LogLevel:          asynq.WarnLevel,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc(taskType, func(ctx context.Context, t *asynq.Task) error {
		var p payload
		if err := json.Unmarshal(t.Payload(), &p); err != nil {
			return fmt.Errorf("%w: %v", asynq.SkipRetry, err)
		}
		return handle(ctx, oa, rdb, p)
	})
	if err := srv.Start(mux); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "asynqpeer worker ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	srv.Shutdown()
	return nil
}

// handle streams one answer onto its channel.
func handle(ctx context.Context, oa *openai.Client, rdb *redis.Client, p payload) error {
	publish := func(ev event) error {
		b, _ := json.Marshal(ev)
		return rdb.Publish(ctx, p.Channel, b).Err()
	}
	stream, err := oa.CreateChatCompletionStream(ctx, openai.ChatCompletionRequest{
		Model:    "bench-model",
		Messages: []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: p.Prompt}},
		Stream:   true,
	})
	if err != nil {
		_ = publish(event{Seq: 1, Type: "error", Error: err.Error()})
		return fmt.Errorf("%w: %v", asynq.SkipRetry, err)
	}
	defer stream.Close()
	seq := 0
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			seq++
			_ = publish(event{Seq: seq, Type: "error", Error: err.Error()})
			return fmt.Errorf("%w: %v", asynq.SkipRetry, err)
		}
		if len(resp.Choices) == 0 || resp.Choices[0].Delta.Content == "" {
			continue
		}
		seq++
		if err := publish(event{Seq: seq, Type: "chunk", Content: resp.Choices[0].Delta.Content}); err != nil {
			return err
		}
	}
	return publish(event{Seq: seq + 1, Type: "done"})
}

// result is what load prints.
type result struct {
	Jobs       int     `json:"jobs"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	WallNS     int64   `json:"wall_ns"`
	TTFCNS     []int64 `json:"ttfc_ns"`
	DoneNS     []int64 `json:"done_ns"`
	Chunks     int64   `json:"chunks"`
}

func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	addr := fs.String("redis", "127.0.0.1:6379", "Redis address")
	jobs := fs.Int("jobs", 1000, "jobs to run")
	warmup := fs.Int("warmup", 0, "jobs to run first, not measured")
	concurrency := fs.Int("concurrency", 64, "jobs in flight")
	queue := fs.String("queue", "chat", "asynq queue")
	prefix := fs.String("prefix", "reply", "reply channel prefix")
	shards := fs.Int("shards", 4, "pub/sub connections the replies are spread over")
	tag := fs.String("tag", fmt.Sprint(time.Now().UnixNano()), "makes prompts and IDs unique")
	timeout := fs.Duration("timeout", 2*time.Minute, "per job")
	_ = fs.Parse(args)
	ctx := context.Background()

	client := asynq.NewClient(asynq.RedisClientOpt{Addr: *addr, PoolSize: *concurrency})
	defer client.Close()
	var waiters sync.Map // job ID → chan string
	for s := range *shards {
		rdb := redis.NewClient(&redis.Options{Addr: *addr})
		defer rdb.Close()
		ps := rdb.PSubscribe(ctx, fmt.Sprintf("%s:%d:*", *prefix, s))
		defer ps.Close()
		if _, err := ps.Receive(ctx); err != nil { // the subscription is confirmed
			return err
		}
		ch := ps.Channel(redis.WithChannelSize(100_000))
		go func() { // ends when ps is closed
			for m := range ch {
				id := m.Channel[strings.LastIndexByte(m.Channel, ':')+1:]
				if w, ok := waiters.Load(id); ok {
					w.(chan string) <- m.Payload
				}
			}
		}()
	}
	run := func(n int, kind string) ([]time.Duration, []time.Duration, time.Duration, int, string, int64) {
		ttfc := make([]time.Duration, n)
		done := make([]time.Duration, n)
		var next atomic.Int64
		var errs atomic.Int64
		var chunks atomic.Int64
		var firstErr atomic.Value
		var wg sync.WaitGroup
		start := time.Now()
		for range *concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= n {
						return
					}
					f, d, c, err := runJob(ctx, client, &waiters, *queue, *prefix, *shards, fmt.Sprintf("%s-%s-%d", *tag, kind, i), *timeout)
					ttfc[i], done[i] = f, d
					chunks.Add(int64(c))
					if err != nil {
						errs.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					}
				}
			}()
		}
		wg.Wait()
		fe, _ := firstErr.Load().(string)
		return ttfc, done, time.Since(start), int(errs.Load()), fe, chunks.Load()
	}
	if *warmup > 0 {
		run(*warmup, "warm")
	}
	ttfc, done, wall, errs, firstErr, chunks := run(*jobs, "job")
	res := result{Jobs: *jobs, Errors: errs, FirstError: firstErr, WallNS: int64(wall), Chunks: chunks}
	for i := range ttfc {
		if ttfc[i] > 0 {
			res.TTFCNS = append(res.TTFCNS, int64(ttfc[i]))
		}
		if done[i] > 0 {
			res.DoneNS = append(res.DoneNS, int64(done[i]))
		}
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// runJob enqueues one job and waits for its reply: time to first chunk,
// time to done, chunks received.
func runJob(ctx context.Context, client *asynq.Client, waiters *sync.Map, queue, prefix string, shards int, id string, timeout time.Duration) (time.Duration, time.Duration, int, error) {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	channel := fmt.Sprintf("%s:%d:%s", prefix, h.Sum32()%uint32(shards), id)
	ch := make(chan string, 64)
	waiters.Store(id, ch)
	defer waiters.Delete(id)
	b, _ := json.Marshal(payload{Prompt: "bench " + id, Channel: channel})
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	if _, err := client.EnqueueContext(ctx, asynq.NewTask(taskType, b), asynq.Queue(queue), asynq.MaxRetry(0)); err != nil {
		return 0, 0, 0, err
	}
	var first time.Duration
	chunks := 0
	for {
		select {
		case raw := <-ch:
			var ev event
			if err := json.Unmarshal([]byte(raw), &ev); err != nil {
				return first, 0, chunks, err
			}
			switch ev.Type {
			case "chunk":
				if first == 0 {
					first = time.Since(start)
				}
				chunks++
			case "done":
				return first, time.Since(start), chunks, nil
			default:
				return first, 0, chunks, errors.New(ev.Error)
			}
		case <-ctx.Done():
			return first, 0, chunks, fmt.Errorf("job %s: %w", id, ctx.Err())
		}
	}
}
