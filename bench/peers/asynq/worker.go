package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	openai "github.com/sashabaranov/go-openai"
)

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
