package tasks

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/hibiken/asynq"
)

// enqueueOnce enqueues task under id (into queue), with opts; a task of
// that id that an earlier attempt of the same fan-out already enqueued
// counts as enqueued, so a retried fan-out never doubles its children.
func enqueueOnce(ctx context.Context, enq Enqueuer, task *asynq.Task, id, queue string, opts ...asynq.Option) (Child, error) {
	if id != "" {
		opts = append(opts, asynq.TaskID(id))
	}
	info, err := enq.EnqueueContext(ctx, task, opts...)
	switch {
	case errors.Is(err, asynq.ErrTaskIDConflict):
		return Child{TaskID: id, Queue: queue}, nil
	case err != nil:
		return Child{}, err
	}
	return Child{TaskID: info.ID, Queue: info.Queue}, nil
}

// fanOutParallel is how many enqueues a fan-out has in flight at once.
// asynq (v0.26) enqueues one task per round trip (a Lua script) and has no
// batch enqueue; its client is safe for concurrent use, so a bounded pool
// of enqueues hides the round trip while each task still goes through
// asynq's own enqueue. Past a few dozen, Redis, not the round trip, bounds
// the rate.
const fanOutParallel = 32

// fanOutPage is how many locations a fan-out reads from the database at
// once: its memory is a page and the enqueues in flight, whatever the
// number of locations.
const fanOutPage = 1000

// enqueuePool enqueues the children of a fan-out, fanOutParallel at a
// time. Add blocks while they are all busy; Wait returns the first error.
type enqueuePool struct {
	enq   Enqueuer
	queue string
	work  chan poolItem
	wg    sync.WaitGroup
	ctx   context.Context
	stop  context.CancelCauseFunc
	count atomic.Int64
	// children, when set, is told each child enqueued (from the pool's
	// goroutines, one at a time).
	mu       sync.Mutex
	children func(Child)
}

type poolItem struct {
	loc, id string
	task    *asynq.Task
	opts    []asynq.Option
	// refreshes is how many refreshes the task makes (one, or a batch's).
	refreshes int
}

func newEnqueuePool(ctx context.Context, enq Enqueuer, queue string, children func(Child)) *enqueuePool {
	p := &enqueuePool{enq: enq, queue: queue, work: make(chan poolItem), children: children}
	p.ctx, p.stop = context.WithCancelCause(ctx)
	for range fanOutParallel {
		p.wg.Go(p.run)
	}
	return p
}

func (p *enqueuePool) run() {
	for it := range p.work {
		if p.ctx.Err() != nil {
			continue
		}
		c, err := enqueueOnce(p.ctx, p.enq, it.task, it.id, p.queue, it.opts...)
		if err != nil {
			p.stop(&enqueueError{loc: it.loc, err: err})
			continue
		}
		p.count.Add(int64(it.refreshes))
		if p.children != nil {
			c.LocationID = it.loc
			p.mu.Lock()
			p.children(c)
			p.mu.Unlock()
		}
	}
}

// Add hands a child to the pool; false when the pool stopped on an error
// (or ctx ended), which Wait returns.
func (p *enqueuePool) Add(loc, id string, task *asynq.Task, opts ...asynq.Option) bool {
	return p.add(poolItem{loc: loc, id: id, task: task, opts: opts, refreshes: 1})
}

// AddBatch is Add for a task of the refreshes of locs (listed, when
// children are, under its first).
func (p *enqueuePool) AddBatch(locs []string, id string, task *asynq.Task, opts ...asynq.Option) bool {
	return p.add(poolItem{loc: locs[0], id: id, task: task, opts: opts, refreshes: len(locs)})
}

func (p *enqueuePool) add(it poolItem) bool {
	select {
	case p.work <- it:
		return true
	case <-p.ctx.Done():
		return false
	}
}

// Wait waits for the children handed over and returns how many
// refreshes were enqueued, and the first error.
func (p *enqueuePool) Wait() (int, error) {
	close(p.work)
	p.wg.Wait()
	err := context.Cause(p.ctx)
	p.stop(nil)
	return int(p.count.Load()), err
}

type enqueueError struct {
	loc string
	err error
}

func (e *enqueueError) Error() string { return "enqueue the task of " + e.loc + ": " + e.err.Error() }
func (e *enqueueError) Unwrap() error { return e.err }
