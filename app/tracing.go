package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/ghlsync/ghlsync/internal/tracing"
)

// flushTracing exports the spans not yet sent, for 5 seconds at most, as
// a process stops.
func flushTracing(p *tracing.Provider, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		log.Warn("tracing: the last spans were not exported", "err", err)
	}
}
