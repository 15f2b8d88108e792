package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
)

// serveHTTP serves /healthz (the process is alive), /readyz (it can take
// jobs: NATS connected, JetStream reachable, not draining) and, when
// configured, /metrics.
func (w *Worker) serveHTTP() error {
	if w.cfg.HTTPAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", w.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("worker: listen on %s: %w", w.cfg.HTTPAddr, err)
	}
	w.httpAddr = ln.Addr()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "text/plain")
		_, _ = rw.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", w.readyz)
	if w.cfg.Metrics != nil {
		mux.Handle("GET /metrics", w.cfg.Metrics)
	}
	w.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = w.http.Serve(ln) }() // owned by the worker: Stop shuts it down
	return nil
}

func (w *Worker) stopHTTP(ctx context.Context) {
	if w.http != nil {
		_ = w.http.Shutdown(ctx)
	}
}

// Readiness is what /readyz reports.
type Readiness struct {
	Ready     bool   `json:"ready"`
	NATS      string `json:"nats"`      // the connection's state
	JetStream string `json:"jetstream"` // "ok" or why not
	Draining  bool   `json:"draining"`
}

// Ready checks whether the worker can take jobs now.
func (w *Worker) Ready(ctx context.Context) Readiness {
	r := Readiness{NATS: w.nc.Status().String(), JetStream: "ok", Draining: w.draining.Load()}
	if w.nc.Status() != nats.CONNECTED {
		r.JetStream = "not checked: NATS is not connected"
		return r
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := w.js.AccountInfo(ctx); err != nil {
		r.JetStream = err.Error()
		return r
	}
	r.Ready = !r.Draining
	return r
}

func (w *Worker) readyz(rw http.ResponseWriter, req *http.Request) {
	r := w.Ready(req.Context())
	rw.Header().Set("Content-Type", "application/json")
	if !r.Ready {
		rw.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(rw).Encode(r)
}
