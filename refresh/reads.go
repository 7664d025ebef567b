package refresh

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ghlsync/ghlsync/store"
)

// stateReadBatch bounds the locations one query of stateReads asks for.
const stateReadBatch = 500

// stateReads gathers the reads of credentials (the narrow
// Credentials.RefreshStates, or whole rows with Credentials.CredentialsOf)
// of the requests that arrive together into one query: while a query
// runs, the requests that come meanwhile wait and are read by the next
// one. A read answers only the requests that were waiting when its query
// was sent, so each request still sees what the database held after it
// was made (a refresh's read under its lock sees every write before the
// lock); a worker running 40 token tasks at once costs a few queries, not
// 40. One stateReads is used with one query.
type stateReads struct {
	mu      sync.Mutex
	waiting map[string][]chan stateAnswer
	reading bool
}

type stateAnswer struct {
	c   *store.Credential
	err error
}

// query reads the credentials of locs; a location without one is
// missing from the map.
type query func(ctx context.Context, locs []string) (map[string]*store.Credential, error)

func (s *stateReads) read(ctx context.Context, q query, loc string) (*store.Credential, error) {
	ch := make(chan stateAnswer, 1)
	s.mu.Lock()
	if s.waiting == nil {
		s.waiting = map[string][]chan stateAnswer{}
	}
	s.waiting[loc] = append(s.waiting[loc], ch)
	if !s.reading {
		s.reading = true
		// The reads outlive any one request: the context's values (its
		// trace) but not its end.
		go s.loop(context.WithoutCancel(ctx), q)
	}
	s.mu.Unlock()
	select {
	case a := <-ch:
		return a.c, a.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// loop sends a query for the requests waiting, until none is.
func (s *stateReads) loop(ctx context.Context, q query) {
	for {
		s.mu.Lock()
		if len(s.waiting) == 0 {
			s.reading = false
			s.mu.Unlock()
			return
		}
		batch := make(map[string][]chan stateAnswer, min(len(s.waiting), stateReadBatch))
		for loc, chs := range s.waiting {
			if len(batch) == stateReadBatch {
				break
			}
			batch[loc] = chs
			delete(s.waiting, loc)
		}
		s.mu.Unlock()

		locs := make([]string, 0, len(batch))
		for loc := range batch {
			locs = append(locs, loc)
		}
		qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		found, err := q(qctx, locs)
		cancel()
		for loc, chs := range batch {
			a := stateAnswer{err: err}
			if err == nil {
				if a.c = found[loc]; a.c == nil {
					a.err = fmt.Errorf("store: credential %s: %w", loc, store.ErrNotFound)
				}
			}
			for _, ch := range chs {
				// Each its own copy: a caller may keep what it is given.
				if a.c != nil {
					c := *a.c
					ch <- stateAnswer{c: &c}
					continue
				}
				ch <- a
			}
		}
	}
}
