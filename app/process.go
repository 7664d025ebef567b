package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os/signal"
	"syscall"

	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/ops"
)

// SignalContext is cancelled by SIGINT, SIGTERM or SIGHUP, so that a main
// stops its process through the context. SIGHUP (the terminal closed)
// would otherwise end the process on the spot, with a refresh in flight or
// a sync half recorded.
func SignalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
}

// RunWorkerProcess is the worker process (not --standalone): it opens what
// cfg names, logging to log, and runs RunWorker until ctx is done.
func RunWorkerProcess(ctx context.Context, cfg *config.Config, o WorkerOptions, log *slog.Logger) error {
	d, err := Open(ctx, cfg, log, true, Service("ghlsync-worker"), RedisPool(o.RedisPool()))
	if err != nil {
		return err
	}
	defer d.Close()
	return RunWorker(ctx, d, o)
}

// RunWeb is the web process: it opens what cfg names, logging to log, and
// serves WebHandler on cfg.WebAddr until ctx is done. With a METRICS_ADDR,
// /metrics and /readyz are served there instead, without the admin guard
// (WebHandlers).
func RunWeb(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	d, err := Open(ctx, cfg, log, true, Service("ghlsync-web"))
	if err != nil {
		return err
	}
	defer d.Close()
	h, waitOps := WebHandler(d), func() error { return nil }
	if cfg.MetricsAddr != "" {
		var private http.Handler
		h, private = WebHandlers(d)
		if waitOps, err = ops.Serve(ctx, cfg.MetricsAddr, private, log); err != nil {
			return &config.Error{Var: config.VarMetricsAddr, Msg: err.Error()}
		}
	}
	wait, err := ops.Serve(ctx, cfg.WebAddr, h, log)
	if err != nil {
		return fmt.Errorf("%s: %w", config.VarWebAddr, err)
	}
	return errors.Join(wait(), waitOps())
}
