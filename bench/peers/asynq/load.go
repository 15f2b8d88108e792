package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

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
	l := &loader{client: client, waiters: &waiters, queue: *queue, prefix: *prefix, shards: *shards,
		tag: *tag, concurrency: *concurrency, timeout: *timeout}
	if *warmup > 0 {
		l.run(ctx, *warmup, "warm")
	}
	ttfc, done, wall, errs, firstErr, chunks := l.run(ctx, *jobs, "job")
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

// loader runs jobs: load's settings, its asynq client and the waiters
// its reply subscriptions deliver to.
type loader struct {
	client      *asynq.Client
	waiters     *sync.Map // job ID → chan string
	queue       string
	prefix      string
	shards      int
	tag         string
	concurrency int
	timeout     time.Duration
}

// run runs n jobs, concurrency at a time, their IDs naming kind. It
// returns each job's time to first chunk and to done (0: never), the wall
// time, the number of errors and the first, and the chunks received.
func (l *loader) run(ctx context.Context, n int, kind string) ([]time.Duration, []time.Duration, time.Duration, int, string, int64) {
	ttfc := make([]time.Duration, n)
	done := make([]time.Duration, n)
	var next atomic.Int64
	var errs atomic.Int64
	var chunks atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range l.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				f, d, c, err := runJob(ctx, l.client, l.waiters, l.queue, l.prefix, l.shards, fmt.Sprintf("%s-%s-%d", l.tag, kind, i), l.timeout)
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
