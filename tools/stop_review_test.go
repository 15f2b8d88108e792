package tools_test

import (
	"context"
	"testing"

	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/subjects"
	"github.com/chatfleet/chatfleet/tools"
	"github.com/chatfleet/chatfleet/tools/devtools"
)

// TestStopWhileCalled: Stop while calls keep arriving waits for every call
// the server took (a call taken as Stop began waiting was raced past it).
func TestStopWhileCalled(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	names, _ := subjects.New(subjects.DefaultPrefix)
	caller := natstest.Connect(t, srv.ClientURL())
	for range 5 {
		s, err := tools.Serve(natstest.Connect(t, srv.ClientURL()), tools.Config{}, devtools.Calculator())
		if err != nil {
			t.Fatal(err)
		}
		quit, done := make(chan struct{}), make(chan struct{})
		go func() { // owner: this iteration, which closes quit and waits
			defer close(done)
			for range 5000 { // a bounded flood: the machine is shared
				select {
				case <-quit:
					return
				default:
				}
				_ = caller.PublishRequest(names.Tool("calculator"), "_INBOX.none", []byte(`{"id":"c","arguments":"{\"expression\":\"1+1\"}"}`))
			}
		}()
		_ = caller.Flush()
		if err := s.Stop(context.Background()); err != nil {
			t.Error(err)
		}
		close(quit)
		<-done
	}
}
