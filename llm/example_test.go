package llm_test

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
)

func ExampleClient_Stream() {
	upstream := llmtest.New() // the simulated model; use your upstream's URL instead
	defer upstream.Close()

	c, err := llm.New(llm.Config{BaseURL: upstream.URL()})
	if err != nil {
		panic(err)
	}
	s, err := c.Stream(context.Background(), &protocol.Job{
		Model:       "sim",
		Temperature: protocol.Float(0),
		Messages:    []protocol.Message{{Role: protocol.RoleUser, Content: protocol.TextContent("Hello!")}},
	})
	if err != nil {
		panic(err) // an *llm.Error
	}
	defer s.Close()

	var answer strings.Builder
	for {
		d, err := s.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			panic(err)
		}
		answer.WriteString(d.Content)
		if d.FinishReason != "" {
			fmt.Println("finish:", d.FinishReason)
		}
		if d.Usage != nil {
			fmt.Println("completion tokens:", d.Usage.CompletionTokens)
		}
	}
	fmt.Println(answer.String())
	// Output:
	// finish: stop
	// completion tokens: 10
	// Simulated answer to "Hello!". This is chatfleet's built-in model (sim).
}
