package app

import (
	"context"
	"fmt"
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/ops"
)

// SignalContext is cancelled by SIGINT or SIGTERM, so that a main stops
// its process through the context.
func SignalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
}

// RunWorkerProcess is the worker process (not --standalone): it opens what
// cfg names, logging to log, and runs RunWorker until ctx is done.
func RunWorkerProcess(ctx context.Context, cfg *config.Config, o WorkerOptions, log *slog.Logger) error {
	d, err := Open(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer d.Close()
	return RunWorker(ctx, d, o)
}

// RunWeb is the web process: it opens what cfg names, logging to log, and
// serves WebHandler on cfg.WebAddr until ctx is done.
func RunWeb(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	d, err := Open(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer d.Close()
	wait, err := ops.Serve(ctx, cfg.WebAddr, WebHandler(d), log)
	if err != nil {
		return fmt.Errorf("%s: %w", config.VarWebAddr, err)
	}
	return wait()
}
