package ops

import (
	"context"
	"time"
)

// RunOnTicks is IdleMemory.Run with the test's ticks for its Interval's.
func (m *IdleMemory) RunOnTicks(ctx context.Context, ticks <-chan time.Time) { m.run(ctx, ticks) }
