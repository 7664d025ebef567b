package ops

import (
	"context"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// IdleMemory keeps an idle process's memory near what it holds live.
//
// Go's runtime keeps the heap its last collection sized, twice what was
// live then, and an idle process collects only every two minutes: a
// worker that ran 200 syncs at once keeps their heap for up to two minutes
// after, and its pollers' garbage grows it back to that size between
// collections. IdleMemory collects and returns all free memory to the
// system (debug.FreeOSMemory) at the end of every Interval in which no
// work started or ran. A busy process never pays for it; an idle one pays
// a collection of its small heap per Interval (about a millisecond of CPU
// every 5 s).
type IdleMemory struct {
	// Interval is how long no work must have run: 5 s when zero.
	Interval time.Duration
	// Free returns the memory; debug.FreeOSMemory when nil.
	Free func()

	started atomic.Uint64
	running atomic.Int64
}

// Begin records that a piece of work starts; the returned func records
// that it ended.
func (m *IdleMemory) Begin() (end func()) {
	m.started.Add(1)
	m.running.Add(1)
	return func() { m.running.Add(-1) }
}

// Run looks every Interval until ctx is done.
func (m *IdleMemory) Run(ctx context.Context) {
	interval := m.Interval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	m.run(ctx, t.C, nil)
}

// run looks at every tick until ctx is done, calling looked (when set)
// after each look.
func (m *IdleMemory) run(ctx context.Context, ticks <-chan time.Time, looked func()) {
	free := m.Free
	if free == nil {
		free = debug.FreeOSMemory
	}
	// The count of work started at the last look, and whether none ran
	// then: nothing running at both looks and nothing started between
	// them is a whole interval without work.
	seen, wasIdle := m.started.Load(), false
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
		}
		s, idle := m.started.Load(), m.running.Load() == 0
		if wasIdle && idle && s == seen {
			free()
		}
		seen, wasIdle = s, idle
		if looked != nil {
			looked()
		}
	}
}
