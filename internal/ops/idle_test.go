package ops_test

import (
	"context"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/internal/ops"
)

// IdleMemory returns memory at the end of every interval in which no work
// started or ran, and never while work runs or within an interval of it.
func TestIdleMemoryReturnsOnlyAfterAWholeIntervalWithoutWork(t *testing.T) {
	freed := make(chan struct{}) // unbuffered: a return blocks the loop until taken
	looked := make(chan struct{})
	m := &ops.IdleMemory{Free: func() { freed <- struct{}{} }}
	ticks := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.RunOnTicks(ctx, ticks, func() { looked <- struct{}{} })
	}()
	// look ends an interval, at whose end memory must be returned (frees)
	// or not, and waits for the look to be over, so that what the test
	// does next falls in the next interval.
	look := func(when string, frees bool) {
		t.Helper()
		select {
		case ticks <- time.Time{}:
		case <-time.After(10 * time.Second):
			t.Fatal("the loop took no tick in 10 s")
		}
		select {
		case <-freed:
			if !frees {
				t.Fatalf("memory returned %s", when)
			}
			select { // the look ends once the return is over
			case <-looked:
			case <-time.After(10 * time.Second):
				t.Fatal("the look did not end in 10 s")
			}
		case <-looked:
			if frees {
				t.Fatalf("no memory returned %s", when)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the look did not end in 10 s")
		}
	}

	end := m.Begin()
	for range 3 {
		look("while work ran", false)
	}
	end()
	look("in the interval the work ended in", false)
	look("after a whole interval without work", true)
	look("after the next idle interval", true)

	m.Begin()() // work that starts and ends between two looks
	look("in an interval in which work ran", false)
	look("after the interval after it", true)

	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return when its context was done")
	}
}
