package store

import (
	"context"
	"sync"
	"time"
)

// groupCommit combines the SavePatientSync calls that come while an
// earlier one is being written into one statement, a batch at a time.
// Every call still returns only once its own state is written (a sync's
// intent before a create is there before the call, GHL's contact id
// after it), so nothing is promised that a crash could lose: only the
// statements are fewer. At GHL's limit a worker's syncs save two states
// per contact, ten contacts a second per location over many locations,
// and most come in bursts as calls are granted and answered together.
// An idle store writes each at once, as before.
type groupCommit struct {
	mu       sync.Mutex
	queue    []*pendingState
	flushing bool
}

type pendingState struct {
	st   *PatientSync
	done chan error
}

// flushTimeout bounds one combined write. It runs past the cancellation
// of the call that started it: the others in it still wait for it.
const flushTimeout = 30 * time.Second

// save writes st, together with the states saved meanwhile. A call whose
// ctx ends returns at once; its state may still be written.
func (g *groupCommit) save(ctx context.Context, s *Store, st *PatientSync) error {
	// The flush writes a copy: a caller that gave up may change st.
	cp := *st
	w := &pendingState{st: &cp, done: make(chan error, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, w)
	if !g.flushing {
		g.flushing = true
		go g.flush(s)
	}
	g.mu.Unlock()
	select {
	case err := <-w.done:
		st.UpdatedAt = cp.UpdatedAt
		return err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// flush writes what is queued until nothing is. A batch holds each
// patient once, so that one statement never writes a row twice, and a
// later state of a patient goes in a later batch; a batch that fails is
// written again state by state, so that each call gets its own answer.
func (g *groupCommit) flush(s *Store) {
	for {
		g.mu.Lock()
		if len(g.queue) == 0 {
			g.flushing = false
			g.mu.Unlock()
			return
		}
		var batch, rest []*pendingState
		seen := make(map[[2]string]bool, len(g.queue))
		for _, w := range g.queue {
			k := [2]string{w.st.LocationID, w.st.ExternalID}
			if seen[k] {
				rest = append(rest, w)
				continue
			}
			seen[k] = true
			batch = append(batch, w)
		}
		g.queue = rest
		g.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
		if len(batch) == 1 {
			batch[0].done <- s.savePatientSync(ctx, batch[0].st)
			cancel()
			continue
		}
		sts := make([]*PatientSync, len(batch))
		for i, w := range batch {
			sts[i] = w.st
		}
		err := s.savePatientSyncs(ctx, sts)
		for _, w := range batch {
			if err != nil {
				w.done <- s.savePatientSync(ctx, w.st)
				continue
			}
			w.done <- nil
		}
		cancel()
	}
}
