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
	send := func() {
		t.Helper()
		select {
		case ticks <- time.Time{}:
		case <-time.After(10 * time.Second):
			t.Fatal("the loop took no tick in 10 s")
		}
	}
	// tick ends an interval in which memory must not be returned, and
	// waits for the look to be over, so that what the test does next
	// falls in the next interval.
	tick := func(when string) {
		t.Helper()
		send()
		select {
		case <-freed:
			t.Fatalf("memory returned %s", when)
		case <-looked:
		case <-time.After(10 * time.Second):
			t.Fatal("the look did not end in 10 s")
		}
	}
	tickFrees := func(when string) {
		t.Helper()
		send()
		select {
		case <-freed:
		case <-looked:
			t.Fatalf("no memory returned %s", when)
		case <-time.After(10 * time.Second):
			t.Fatal("the look did not end in 10 s")
		}
		select {
		case <-looked:
		case <-time.After(10 * time.Second):
			t.Fatal("the look did not end in 10 s")
		}
	}

	end := m.Begin()
	for range 3 {
		tick("while work ran")
	}
	end()
	tick("in the interval the work ended in")
	tickFrees("after a whole interval without work")
	tickFrees("after the next idle interval")

	m.Begin()() // work that starts and ends between two looks
	tick("in an interval in which work ran")
	tickFrees("after the interval after it")

	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return when its context was done")
	}
}
