package ops

import (
	"context"
	"time"
)

// RunOnTicks is IdleMemory.Run with the test's ticks for its Interval's;
// looked is called after each look.
func (m *IdleMemory) RunOnTicks(ctx context.Context, ticks <-chan time.Time, looked func()) {
	m.run(ctx, ticks, looked)
}
