package microask_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"go.uber.org/goleak"

	"github.com/chatfleet/chatfleet/internal/microask"
	"github.com/chatfleet/chatfleet/internal/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A large fleet answers at once while the asker is still busy with the
// first answer: none of the answers is lost.
func TestAskKeepsEveryAnswerOfALargeFleet(t *testing.T) {
	const instances = 300
	srv := natstest.RunServer(t)
	asker := natstest.Connect(t, srv.ClientURL())
	fleet := natstest.Connect(t, srv.ClientURL())
	subject, err := micro.ControlSubject(micro.PingVerb, "big", "")
	if err != nil {
		t.Fatal(err)
	}
	var replied atomic.Int64
	for range instances {
		if _, err := fleet.Subscribe(subject, func(m *nats.Msg) {
			_ = m.Respond([]byte("{}"))
			replied.Add(1)
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := fleet.Flush(); err != nil {
		t.Fatal(err)
	}
	first := true
	got := microask.Ask(context.Background(), asker, micro.PingVerb, "big", 2*time.Second, false, func(*nats.Msg) bool {
		if first { // hold the first answer until every answer has reached the asker's connection
			first = false
			deadline := time.Now().Add(5 * time.Second)
			for replied.Load() < instances && time.Now().Before(deadline) {
				_ = fleet.Flush()
			}
			_ = fleet.Flush()
			_ = asker.Flush() // the server sent every answer before this PONG
		}
		return true
	})
	if len(got) != instances {
		t.Fatalf("got %d answers of %d instances", len(got), instances)
	}
}
