package syncer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/internal/lease"
)

// ErrLocationBusy: another sync of the location kept its lock for longer
// than Locks.Wait.
var ErrLocationBusy = errors.New("another sync of this location is running")

// Locks lets one sync of a location run at a time, across every worker:
// both kinds take the same lock, since an appointment sync creates
// contacts too. A lock is a lease (package lease): a holder that dies
// frees the location within TTL, and one that cannot renew stops before
// its lease can expire under it.
type Locks struct {
	Redis redis.UniversalClient
	// TTL of the lease; 15s when zero.
	TTL time.Duration
	// Wait bounds how long Acquire waits for a busy location; 5m when
	// zero. A run holds the lock for at most one batch.
	Wait  time.Duration
	Clock clock.Clock
}

func syncLockKey(loc string) string { return "ghlsync:sync:lock:" + loc }

// Acquire takes loc's lock, waiting while another run holds it. The
// lease's context, derived from ctx, ends as soon as the lock cannot be
// vouched for; release the lease when done.
func (l *Locks) Acquire(ctx context.Context, loc string) (*lease.Lease, error) {
	ttl := l.TTL
	if ttl <= 0 {
		ttl = 15 * time.Second
	}
	wait := l.Wait
	if wait <= 0 {
		wait = 5 * time.Minute
	}
	lk, err := lease.Acquire(ctx, l.Redis, syncLockKey(loc), lease.Options{TTL: ttl, MaxPoll: 500 * time.Millisecond, Clock: l.Clock}, wait, nil)
	if errors.Is(err, lease.ErrBusy) {
		return nil, fmt.Errorf("sync of %s: %w (waited %s)", loc, ErrLocationBusy, wait)
	}
	if err != nil {
		return nil, fmt.Errorf("sync lock %s: %w", loc, err)
	}
	return lk, nil
}

// Held reports whether some run holds loc's lock.
func (l *Locks) Held(ctx context.Context, loc string) (bool, error) {
	n, err := l.Redis.Exists(ctx, syncLockKey(loc)).Result()
	if err != nil {
		return false, fmt.Errorf("sync lock %s: %w", loc, err)
	}
	return n > 0, nil
}
