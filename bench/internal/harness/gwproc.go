package harness

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/chatfleet/chatfleet/gateway"
	"github.com/chatfleet/chatfleet/protocol"
)

// gatewayProc is a `chatfleet gateway` process in front of a fleet.
type gatewayProc struct {
	*proc
	url string // http://127.0.0.1:<port>/v1
	key string // an API key of the default tenant, the producer's
}

// startGateway starts `chatfleet gateway` for f's prefix as a process of
// its own, configured as in production: an API key file (one key, of the
// tenant the producer's jobs have), a loopback address, no admin
// endpoint. It is the caller's to stop.
func (r *runner) startGateway(ctx context.Context, f *fleet) (*gatewayProc, error) {
	key, line, err := gateway.NewKey(protocol.DefaultTenant)
	if err != nil {
		return nil, err
	}
	keys := filepath.Join(r.cfg.WorkDir, sanitizeFile(f.name)+"-gateway-keys")
	if err := os.WriteFile(keys, []byte(line+"\n"), 0o600); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	env := []string{
		"CHATFLEET_NATS_URL=" + r.natsURL,
		"CHATFLEET_PREFIX=" + f.names.Prefix(),
		"CHATFLEET_GATEWAY_ADDR=" + addr,
		"CHATFLEET_GATEWAY_KEYS=" + keys,
		"CHATFLEET_HTTP_ADDR=",
		"CHATFLEET_LOG_FORMAT=json",
		"CHATFLEET_LOG_LEVEL=info",
		"CHATFLEET_SHUTDOWN_GRACE=5s",
	}
	if r.cfg.ProfileDir != "" {
		env = append(env, "CHATFLEET_BENCH_CPUPROFILE="+filepath.Join(r.cfg.ProfileDir, sanitizeFile(f.name)+"-gateway.cpu.pprof"))
	}
	p, err := startProc(procSpec{name: sanitizeFile(f.name) + "-gateway", bin: r.bin, args: []string{"gateway"}, env: env, logDir: r.logDir, readyLine: `"gateway started"`})
	if err != nil {
		return nil, err
	}
	if err := p.waitReady(ctx, 30*time.Second); err != nil {
		_ = p.stop(5 * time.Second)
		return nil, err
	}
	return &gatewayProc{proc: p, url: "http://" + addr + "/v1", key: key}, nil
}
