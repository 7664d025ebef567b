package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/internal/config"
)

// ExitConfig is the exit status of a process stopped by bad configuration.
const ExitConfig = 2

// SignalContext is cancelled by SIGINT or SIGTERM.
func SignalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
}

// ConfigFailure prints a configuration or usage error as one line and
// returns ExitConfig.
func ConfigFailure(stderr io.Writer, prog string, err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return ExitConfig
	}
	fmt.Fprintf(stderr, "%s: %v\n", prog, err)
	return ExitConfig
}

// IsConfigError reports whether err comes from bad configuration.
func IsConfigError(err error) bool {
	var ce *config.Error
	return errors.As(err, &ce)
}

// WaitTask polls a task until it completed or was archived (failed for
// good), or ctx is done. onRetry, if set, is told each new retry error.
func WaitTask(ctx context.Context, insp *asynq.Inspector, queue, id string, onRetry func(*asynq.TaskInfo)) (*asynq.TaskInfo, error) {
	lastErr := ""
	for {
		info, err := insp.GetTaskInfo(queue, id)
		if err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
			return nil, err
		}
		if info != nil {
			switch info.State {
			case asynq.TaskStateCompleted, asynq.TaskStateArchived:
				return info, nil
			case asynq.TaskStateRetry:
				if onRetry != nil && info.LastErr != lastErr {
					lastErr = info.LastErr
					onRetry(info)
				}
			}
		}
		select {
		case <-ctx.Done():
			return info, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// OpenProcess opens the shared parts of the process prog, logging to
// stderr. On failure it reports why (bad configuration as one line) and
// returns the exit status to end with: 2 for configuration, 1 otherwise.
func OpenProcess(ctx context.Context, prog string, cfg *config.Config, stderr io.Writer) (*Deps, int) {
	log := NewLogger(stderr, cfg.LogLevel)
	d, err := Open(ctx, cfg, log, true)
	switch {
	case err == nil:
		return d, 0
	case IsConfigError(err):
		return nil, ConfigFailure(stderr, prog, err)
	default:
		log.Error(prog+" cannot start", "err", err)
		return nil, 1
	}
}
