package store

import (
	"context"
	"sync"
	"time"
)

// groupCommit combines the writes of one kind (a sync's state of a
// patient, what a sync sent of a record) that come while an earlier one
// is being written into one statement, a batch at a time. Every call
// still returns only once its own write is done (a sync's intent and what
// it sends are recorded before its call, GHL's contact id after it), so
// nothing is promised that a crash could lose: only the statements are
// fewer. At GHL's limit a worker's syncs write three rows per contact, ten
// contacts a second per location over many locations, and most come in
// bursts as calls are granted and answered together. An idle store
// writes each at once, as before.
type groupCommit[T any] struct {
	// key names a write's row: a batch holds each row once.
	key func(T) string
	// one writes one; many writes several rows in one statement. many's
	// left, when not nil, marks the rows the statement did not write (a
	// compare-and-set it lost): each of those is written again by one,
	// which gives its caller its own answer.
	one  func(ctx context.Context, v T) error
	many func(ctx context.Context, vs []T) (left []bool, err error)

	mu       sync.Mutex
	queue    []*pendingWrite[T]
	flushing bool
}

type pendingWrite[T any] struct {
	v    T
	done chan error
}

// maxBatch bounds the rows of one statement, well within the bind
// parameters a statement may have (PostgreSQL's 65,535, SQLite's 32,766).
const maxBatch = 500

// flushTimeout bounds one combined write. It runs past the cancellation
// of the call that started it: the others in it still wait for it.
const flushTimeout = 30 * time.Second

// save writes v, together with the writes that come meanwhile. v must
// not change until save returns; a call whose ctx ends returns at once,
// and its write may still be done.
func (g *groupCommit[T]) save(ctx context.Context, v T) error {
	w := &pendingWrite[T]{v: v, done: make(chan error, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, w)
	if !g.flushing {
		g.flushing = true
		go g.flush()
	}
	g.mu.Unlock()
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// flush writes what is queued until nothing is. A batch holds each row
// once, so that one statement never writes a row twice, and a later
// write of a row goes in a later batch, as do writes past maxBatch; a
// batch that fails is written again one by one, as is a row that a batch
// left, so that each call gets its own answer.
func (g *groupCommit[T]) flush() {
	for {
		g.mu.Lock()
		if len(g.queue) == 0 {
			g.flushing = false
			g.mu.Unlock()
			return
		}
		var batch, rest []*pendingWrite[T]
		seen := make(map[string]bool, len(g.queue))
		for _, w := range g.queue {
			if k := g.key(w.v); seen[k] || len(batch) == maxBatch {
				rest = append(rest, w)
			} else {
				seen[k] = true
				batch = append(batch, w)
			}
		}
		g.queue = rest
		g.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
		var (
			left []bool
			err  error
		)
		if len(batch) > 1 {
			vs := make([]T, len(batch))
			for i, w := range batch {
				vs[i] = w.v
			}
			left, err = g.many(ctx, vs)
		}
		for i, w := range batch {
			if len(batch) == 1 || err != nil || (left != nil && left[i]) {
				w.done <- g.one(ctx, w.v)
				continue
			}
			w.done <- nil
		}
		cancel()
	}
}

// all adapts a many that writes every row or fails as a whole.
func all[T any](many func(ctx context.Context, vs []T) error) func(context.Context, []T) ([]bool, error) {
	return func(ctx context.Context, vs []T) ([]bool, error) { return nil, many(ctx, vs) }
}
