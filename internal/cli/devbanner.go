package cli

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/chatfleet/chatfleet/internal/config"
	"github.com/chatfleet/chatfleet/subjects"
)

// devBanner tells the user, with the ports dev actually uses, how to ask,
// how to let the model use the fleet tools dev serves, and how to start
// another worker against this dev server: configured as dev's workers
// are (every topology setting that differs from its default, the default
// model), on the same upstream. The upstream's API
// key is never printed: the command says to add it.
func devBanner(env config.Env, natsURL, modelURL, gatewayURL string, simulated bool, tools []string) string {
	self := selfCommand()
	var join []string // what a process needs to join this dev server
	if natsURL != config.Default("CHATFLEET_NATS_URL") {
		join = append(join, "CHATFLEET_NATS_URL="+natsURL)
	}
	if env.Prefix != subjects.DefaultPrefix {
		join = append(join, "CHATFLEET_PREFIX="+env.Prefix)
	}
	worker := append([]string{}, join...)
	worker = append(worker, env.NonDefault(append(config.TopologyVariables(), "CHATFLEET_MODEL")...)...)
	if addr := nextPort(env.HTTPAddr); addr != "" {
		worker = append(worker, "CHATFLEET_HTTP_ADDR="+addr)
	}
	upstream := "the same upstream"
	var add []string // what the user must add to the command
	switch {
	case simulated:
		worker = append(worker, "CHATFLEET_LLM_BASE_URL="+modelURL)
		upstream = "the simulated model at " + modelURL
	case env.LLMBaseURL != "":
		base := config.RedactURL(env.LLMBaseURL)
		worker = append(worker, "CHATFLEET_LLM_BASE_URL="+base)
		upstream += " at " + base
		if base != env.LLMBaseURL {
			add = append(add, "the base URL's credentials in place of xxxxx")
		}
	}
	if !simulated && env.LLMAPIKey != "" {
		add = append(add, "your CHATFLEET_LLM_API_KEY / OPENAI_API_KEY")
	}
	for i, kv := range worker {
		name, value, _ := strings.Cut(kv, "=")
		worker[i] = name + "=" + shellWord(value) // a quoted name would be no assignment
	}
	plus := ""
	if len(add) > 0 {
		plus = ", plus " + strings.Join(add, " and ")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nchatfleet dev: NATS at %s. In another terminal:\n", natsURL)
	fmt.Fprintf(&b, "  %s ask \"hello\"\n", strings.Join(append(join, self), " "))
	if len(tools) > 0 {
		fmt.Fprintf(&b, "Fleet tools served here: %s. Let the model use one:\n", strings.Join(tools, ", "))
		fmt.Fprintf(&b, "  %s ask --tools calculator \"what is 17*23?\"\n", strings.Join(append(join, self), " "))
	}
	fmt.Fprintf(&b, "Another worker on %s%s:\n", upstream, plus)
	fmt.Fprintf(&b, "  %s worker\n", strings.Join(append(worker, self), " "))
	if gatewayURL != "" {
		fmt.Fprintf(&b, "OpenAI-compatible gateway (any OpenAI client; no API key, loopback only):\n")
		fmt.Fprintf(&b, "  curl %s/chat/completions -d '{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}'\n", gatewayURL, env.Model)
	}
	fmt.Fprintf(&b, "Ctrl-C stops.\n\n")
	return b.String()
}

// shellWord quotes s for a POSIX shell unless it needs no quotes.
func shellWord(s string) string {
	if strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.,:/=@%+") == "" && s != "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// nextPort returns addr with its port plus one, for a second process's
// health endpoint; "" when addr is empty (none served) or has no numeric
// port.
func nextPort(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p >= 65535 {
		return ""
	}
	return net.JoinHostPort(host, strconv.Itoa(p+1))
}

// selfCommand is how the user runs this program: the binary's path when
// it is an installed or built chatfleet, `go run ./cmd/chatfleet` when it
// was built by go run (or is not chatfleet at all, as in tests).
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil || filepath.Base(exe) != "chatfleet" || strings.Contains(exe, string(filepath.Separator)+"go-build") {
		return "go run ./cmd/chatfleet"
	}
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, exe); err == nil && !strings.HasPrefix(rel, "..") {
			return "." + string(filepath.Separator) + rel
		}
	}
	return exe
}
