package clock_test

import (
	"context"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/internal/clock"
)

var t0 = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

func fired(ch <-chan time.Time) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestOrNilIsReal(t *testing.T) {
	t.Parallel()
	if clock.Or(nil) != clock.Real {
		t.Fatal("Or(nil) is not the real clock")
	}
	f := clock.NewFake(t0)
	if clock.Or(f) != f {
		t.Fatal("Or(f) is not f")
	}
}

func TestFakeAfterFiresOnAdvance(t *testing.T) {
	t.Parallel()
	f := clock.NewFake(t0)
	ch := f.After(time.Second)
	f.Advance(999 * time.Millisecond)
	if fired(ch) {
		t.Fatal("fired before its time")
	}
	f.Advance(time.Millisecond)
	if !fired(ch) {
		t.Fatal("did not fire at its time")
	}
	if f.Waiters() != 0 {
		t.Fatalf("%d waiters left", f.Waiters())
	}
	if !fired(f.After(0)) {
		t.Fatal("After(0) did not fire at once")
	}
}

func TestFakeTickerTicksAndDrops(t *testing.T) {
	t.Parallel()
	f := clock.NewFake(t0)
	tk := f.NewTicker(time.Second)
	f.Advance(3500 * time.Millisecond) // three ticks due, one kept, as time.Ticker
	if !fired(tk.C()) || fired(tk.C()) {
		t.Fatal("want exactly one buffered tick")
	}
	if d := f.AdvanceToNext(); d != 500*time.Millisecond {
		t.Fatalf("AdvanceToNext moved %s, want 500ms (the next tick at 4s)", d)
	}
	if !fired(tk.C()) {
		t.Fatal("no tick at 4s")
	}
	tk.Stop()
	if f.Waiters() != 0 || f.AdvanceToNext() != 0 {
		t.Fatal("a stopped ticker still waits")
	}
}

func TestFakeWaitForWaiters(t *testing.T) {
	t.Parallel()
	f := clock.NewFake(t0)
	done := make(chan struct{})
	go func() { <-f.After(time.Minute); close(done) }()
	if !f.WaitForWaiters(1, nil) {
		t.Fatal("WaitForWaiters gave up")
	}
	f.AdvanceToNext()
	<-done
	stop := make(chan struct{})
	close(stop)
	if f.WaitForWaiters(1, stop) {
		t.Fatal("WaitForWaiters reported a waiter that is gone")
	}
}

func TestSleep(t *testing.T) {
	t.Parallel()
	f := clock.NewFake(t0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := clock.Sleep(ctx, f, time.Hour); err == nil {
		t.Fatal("Sleep under a cancelled context returned nil")
	}
	if f.Waiters() != 0 {
		t.Fatal("an interrupted Sleep left its timer pending")
	}
	errs := make(chan error)
	go func() { errs <- clock.Sleep(context.Background(), f, time.Hour) }()
	f.WaitForWaiters(1, nil)
	f.Advance(time.Hour)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if got := clock.Since(f, t0); got != time.Hour {
		t.Fatalf("Since = %s", got)
	}
}
