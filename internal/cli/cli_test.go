package cli_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
)

// TestUsage: help and its spellings exit 0, no arguments or an unknown
// command exit 2; all print the usage, listing every command, on stderr.
func TestUsage(t *testing.T) {
	ctx := fleettest.Context(t, 10*time.Second)
	for _, tc := range []struct {
		args []string
		code int
		err  string
	}{
		{nil, 2, ""},
		{[]string{"help"}, 0, ""},
		{[]string{"-h"}, 0, ""},
		{[]string{"--help"}, 0, ""},
		{[]string{"frobnicate"}, 2, `chatfleet: unknown command "frobnicate"`},
		{[]string{"--model", "x"}, 2, `unknown command "--model"`},
	} {
		res := run(ctx, "", tc.args...)
		if res.code != tc.code || res.out != "" {
			t.Errorf("%q: %v; want exit %d and nothing on stdout", tc.args, res, tc.code)
		}
		if !strings.Contains(res.err, "Usage: chatfleet COMMAND") || !strings.Contains(res.err, tc.err) {
			t.Errorf("%q: stderr = %q, want the usage and %q", tc.args, res.err, tc.err)
		}
		for _, cmd := range []string{"dev", "worker", "init", "ask", "cancel", "dlq", "status", "upstream", "simulate", "env"} {
			if !strings.Contains(res.err, "\n  "+cmd+" ") {
				t.Errorf("%q: usage does not list %s", tc.args, cmd)
			}
		}
	}
}

// TestNoArgumentsCommands: worker and dev take no arguments.
func TestNoArgumentsCommands(t *testing.T) {
	useNATS(t, "nats://127.0.0.1:1")
	ctx := fleettest.Context(t, 10*time.Second)
	for _, args := range [][]string{{"worker", "extra"}, {"worker", "--id", "w"}, {"dev", "extra"}} {
		res := run(ctx, "", args...)
		if res.code != 2 || !strings.Contains(res.err, "takes no arguments") {
			t.Errorf("%q: %v; want exit 2", args, res)
		}
	}
}

// TestBadLogConfig: an invalid log level or format is a usage error of
// the long-running commands, found before anything starts.
func TestBadLogConfig(t *testing.T) {
	useNATS(t, "nats://127.0.0.1:1")
	ctx := fleettest.Context(t, 10*time.Second)
	t.Setenv("CHATFLEET_LOG_LEVEL", "chatty")
	for _, cmd := range []string{"worker", "dev"} {
		res := run(ctx, "", cmd)
		if res.code != 2 || !strings.Contains(res.err, "CHATFLEET_LOG_LEVEL") {
			t.Errorf("%s with a bad log level: %v; want exit 2", cmd, res)
		}
	}
	t.Setenv("CHATFLEET_LOG_LEVEL", "info")
	t.Setenv("CHATFLEET_LOG_FORMAT", "xml")
	res := run(ctx, "", "worker")
	if res.code != 2 || !strings.Contains(res.err, "CHATFLEET_LOG_FORMAT") {
		t.Errorf("worker with a bad log format: %v; want exit 2", res)
	}
	t.Setenv("CHATFLEET_LOG_FORMAT", "text")
	t.Setenv("CHATFLEET_MAX_CONCURRENT_REQUESTS", "many")
	for _, args := range [][]string{{"worker"}, {"dev"}, {"ask", "hi"}, {"cancel", "some-id"}} {
		res := run(ctx, "", args...)
		if res.code != 2 || !strings.Contains(res.err, "MAX_CONCURRENT_REQUESTS") {
			t.Errorf("%q with an unparsable variable: %v; want exit 2", args, res)
		}
	}
}
