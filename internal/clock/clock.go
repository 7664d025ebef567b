// Package clock is the one clock of ghlsync. Every component that reads the
// time or waits takes a Clock, so that tests can drive time (Fake) instead
// of waiting it out. A nil Clock is the real one: use Or(c).
package clock

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Clock tells the time and waits. Implementations are safe for concurrent
// use.
type Clock interface {
	Now() time.Time
	// After is time.After on this clock.
	After(d time.Duration) <-chan time.Time
	// NewTicker is time.NewTicker on this clock.
	NewTicker(d time.Duration) Ticker
	// NewTimer is time.NewTimer on this clock. Stop a timer nobody will
	// wait for: on a Fake, a pending timer counts as a waiter.
	NewTimer(d time.Duration) Ticker
}

// Ticker is a *time.Ticker (or, from NewTimer, a *time.Timer) on a Clock.
type Ticker interface {
	C() <-chan time.Time
	Stop()
}

// Real is the system clock.
var Real Clock = realClock{}

// Or returns c, or Real when c is nil, so that a zero-valued field is the
// real clock.
func Or(c Clock) Clock {
	if c == nil {
		return Real
	}
	return c
}

// Since is time.Since on c.
func Since(c Clock, t time.Time) time.Duration { return Or(c).Now().Sub(t) }

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
func (realClock) NewTicker(d time.Duration) Ticker       { return realTicker{time.NewTicker(d)} }
func (realClock) NewTimer(d time.Duration) Ticker        { return realTimer{time.NewTimer(d)} }

type realTicker struct{ t *time.Ticker }

func (t realTicker) C() <-chan time.Time { return t.t.C }
func (t realTicker) Stop()               { t.t.Stop() }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop()               { t.t.Stop() }

// Fake is a Clock that moves only when told to (Advance, AdvanceToNext).
// Its zero value is not usable; make one with NewFake.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	waiters []*waiter
	changed chan struct{} // closed and replaced whenever waiters change
}

type waiter struct {
	at      time.Time
	every   time.Duration // >0 for a ticker
	ch      chan time.Time
	stopped bool
}

// NewFake returns a fake clock that reads now.
func NewFake(now time.Time) *Fake { return &Fake{now: now, changed: make(chan struct{})} }

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// After returns a channel that receives the fake time once it has
// advanced by d.
func (f *Fake) After(d time.Duration) <-chan time.Time { return f.NewTimer(d).C() }

// NewTimer returns a timer that fires once the fake time has advanced by d.
func (f *Fake) NewTimer(d time.Duration) Ticker {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := &waiter{at: f.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		w.ch <- f.now
	} else {
		f.addLocked(w)
	}
	return &fakeTicker{f: f, w: w}
}

// NewTicker returns a ticker that ticks every d of fake time.
func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive interval for NewTicker")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	w := &waiter{at: f.now.Add(d), every: d, ch: make(chan time.Time, 1)}
	f.addLocked(w)
	return &fakeTicker{f: f, w: w}
}

func (f *Fake) addLocked(w *waiter) {
	f.waiters = append(f.waiters, w)
	f.signalLocked()
}

func (f *Fake) signalLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

type fakeTicker struct {
	f *Fake
	w *waiter
}

func (t *fakeTicker) C() <-chan time.Time { return t.w.ch }
func (t *fakeTicker) Stop() {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	t.w.stopped = true
	t.f.removeLocked(t.w)
}

func (f *Fake) removeLocked(w *waiter) {
	for i, x := range f.waiters {
		if x == w {
			f.waiters = append(f.waiters[:i], f.waiters[i+1:]...)
			f.signalLocked()
			return
		}
	}
}

// Advance moves the clock forward by d, firing every timer and ticker that
// falls due on the way (a ticker drops ticks nobody received, as
// time.Ticker does).
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	f.fireLocked()
}

// AdvanceToNext moves the clock to the earliest pending timer or tick and
// fires it; it returns how far the clock moved, 0 when nothing waits.
func (f *Fake) AdvanceToNext() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.waiters) == 0 {
		return 0
	}
	next := f.waiters[0].at
	for _, w := range f.waiters[1:] {
		if w.at.Before(next) {
			next = w.at
		}
	}
	d := max(next.Sub(f.now), 0)
	f.now = f.now.Add(d)
	f.fireLocked()
	return d
}

func (f *Fake) fireLocked() {
	sort.SliceStable(f.waiters, func(i, j int) bool { return f.waiters[i].at.Before(f.waiters[j].at) })
	kept := f.waiters[:0]
	fired := false
	for _, w := range f.waiters {
		if w.at.After(f.now) {
			kept = append(kept, w)
			continue
		}
		fired = true
		select {
		case w.ch <- f.now:
		default:
		}
		if w.every > 0 {
			for !w.at.After(f.now) {
				w.at = w.at.Add(w.every)
			}
			kept = append(kept, w)
		}
	}
	f.waiters = kept
	if fired {
		f.signalLocked()
	}
}

// Waiters returns the number of pending timers and tickers.
func (f *Fake) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters)
}

// WaitForWaiters blocks until at least n timers or tickers are pending, or
// done is closed; it reports whether they are.
func (f *Fake) WaitForWaiters(n int, done <-chan struct{}) bool {
	for {
		f.mu.Lock()
		if len(f.waiters) >= n {
			f.mu.Unlock()
			return true
		}
		changed := f.changed
		f.mu.Unlock()
		select {
		case <-changed:
		case <-done:
			return false
		}
	}
}

// Sleep waits d on c, or until ctx is done, and then returns ctx's error.
func Sleep(ctx context.Context, c Clock, d time.Duration) error {
	t := Or(c).NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C():
		return nil
	}
}
