// Package ops serves the operational endpoints of a ghlsync process:
// /metrics for Prometheus, /healthz (liveness) and /readyz (readiness).
package ops

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler returns a mux with /metrics (from reg), /healthz and /readyz.
func Handler(reg *prometheus.Registry, check func(context.Context) error) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", Metrics(reg))
	mux.Handle("GET /healthz", Healthz())
	mux.Handle("GET /readyz", Readyz(check))
	return mux
}

// Metrics serves reg for Prometheus.
func Metrics(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// Healthz answers 200 while the process serves at all: a failing database
// or Redis is no reason to restart the process.
func Healthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
}

// Readyz runs check, when not nil: nil is 200, an error 503 with the
// error, which names what does not answer or does not run.
func Readyz(check func(context.Context) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if check != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
			defer cancel()
			if err := check(ctx); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		w.Write([]byte("ok\n"))
	})
}

// Serve listens on addr and serves h until ctx is done, then shuts down
// gracefully. An empty addr serves nothing. The listener is bound before
// Serve returns control, so a bad address fails at start.
func Serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger) (wait func() error, err error) {
	if addr == "" {
		return func() error { return nil }, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		done <- err
	}()
	log.Info("listening", "addr", ln.Addr().String())
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	return func() error { return <-done }, nil
}
