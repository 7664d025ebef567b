// Package lease is ghlsync's one Redis lock: a key set with SET NX PX to
// a random owner token, renewed by its holder every TTL/3, so that a holder
// that dies frees the key within TTL. A holder that cannot confirm a
// renewal for TTL/2 (Redis unreachable) counts the lease as lost before it
// can expire under it, so two holders never act at once while Redis keeps
// its keys. The refresh lock and the sync lock are both leases.
package lease

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/internal/redisconn"
)

var (
	// ErrLost says a lease can no longer be vouched for: another holder has
	// it, or no renewal was confirmed for half its TTL.
	ErrLost = errors.New("the lock was lost")
	// ErrBusy says another holder kept the key for longer than Acquire
	// was allowed to wait.
	ErrBusy = errors.New("held by another")
	// errReleased ends a lease's context when it is released.
	errReleased = errors.New("lease released")
)

// Options configure a lease.
type Options struct {
	// TTL of the key; required. The holder renews it every TTL/3.
	TTL time.Duration
	// MaxPoll caps the pause between two tries of Acquire, which starts at
	// 10ms and doubles, with jitter; 200ms when zero.
	MaxPoll time.Duration
	// OnLost, when set, is told once, from the keeper, that the lease was
	// lost.
	OnLost func(error)
	// OwnerPrefix starts the owner token, so that others can tell who
	// holds the key (the refresh lock names its worker, whose heartbeat
	// says whether it lives); the rest stays random.
	OwnerPrefix string
	Clock       clock.Clock
}

// Lease is a held key. Its methods are safe for concurrent use.
type Lease struct {
	rc     redis.UniversalClient
	key    string
	owner  string
	opt    Options
	ctx    context.Context
	cancel context.CancelCauseFunc
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	// lost is set by the keeper; the context alone cannot tell, as its
	// parent may have ended first.
	lost atomic.Bool
}

var (
	renewScript   = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`)
	releaseScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)
)

// TryAcquire takes key if it is free, and returns nil (and no error) when
// another holds it. with, when set, adds commands to the same MULTI
// transaction as the SET, so they see the key's state at the moment it was
// taken (a script can tell from the key's value, owner, whether the SET
// took it); read their results only when a lease is returned. On a Redis
// Cluster a MULTI cannot span hash slots, so there with's commands run in
// a pipeline right after the key was taken, and only then: they see the
// state a moment later, which the caller's key must protect (the refresh
// lock protects its location's pending slot). The lease's context derives
// from ctx.
func TryAcquire(ctx context.Context, rc redis.UniversalClient, key string, o Options, with func(p redis.Pipeliner, owner string)) (*Lease, error) {
	if o.TTL <= 0 {
		return nil, errors.New("lease: Options.TTL must be positive")
	}
	owner := o.OwnerPrefix + newOwner()
	cluster := redisconn.IsCluster(rc)
	var set *redis.BoolCmd
	_, err := rc.TxPipelined(ctx, func(p redis.Pipeliner) error {
		set = p.SetNX(ctx, key, owner, o.TTL)
		if with != nil && !cluster {
			with(p, owner)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lease %s: %w", key, err)
	}
	if !set.Val() {
		return nil, nil
	}
	l := &Lease{rc: rc, key: key, owner: owner, opt: o, stop: make(chan struct{}), done: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancelCause(ctx)
	go l.keep()
	if with != nil && cluster {
		if _, err := rc.Pipelined(ctx, func(p redis.Pipeliner) error { with(p, owner); return nil }); err != nil {
			l.Release(ctx, nil)
			return nil, fmt.Errorf("lease %s: after taking it: %w", key, err)
		}
	}
	return l, nil
}

// Acquire takes key, waiting while another holds it: for at most wait
// (then an error wrapping ErrBusy), or until ctx is done when wait is 0.
// with is as for TryAcquire, added to every try.
func Acquire(ctx context.Context, rc redis.UniversalClient, key string, o Options, wait time.Duration, with func(p redis.Pipeliner, owner string)) (*Lease, error) {
	clk := clock.Or(o.Clock)
	deadline := clk.Now().Add(wait)
	maxPoll := o.MaxPoll
	if maxPoll <= 0 {
		maxPoll = 200 * time.Millisecond
	}
	poll := 10 * time.Millisecond
	for {
		l, err := TryAcquire(ctx, rc, key, o, with)
		if err != nil || l != nil {
			return l, err
		}
		if wait > 0 && !clk.Now().Before(deadline) {
			return nil, fmt.Errorf("lease %s: %w (waited %s)", key, ErrBusy, wait)
		}
		if err := clock.Sleep(ctx, clk, poll/2+rand.N(poll/2+1)); err != nil {
			return nil, fmt.Errorf("lease %s: waiting: %w", key, err)
		}
		poll = min(poll*2, maxPoll)
	}
}

// Context is cancelled, with a cause wrapping ErrLost, as soon as the
// lease cannot be vouched for, and when it is released.
func (l *Lease) Context() context.Context { return l.ctx }

// Owner is the owner token the key holds while this lease has it.
func (l *Lease) Owner() string { return l.owner }

// Lost reports whether the lease was lost, even after the context's
// parent ended.
func (l *Lease) Lost() bool { return l.lost.Load() }

// Release stops renewing, waits for the keeper to end and deletes the key
// if it is still this holder's. with, when set, adds commands to the same
// MULTI transaction (on a Redis Cluster: a pipeline right after the
// deletion, see TryAcquire). The deletion is not cancelled with ctx's
// parent: a lease left behind blocks others for TTL. Release is
// idempotent; only the first call acts.
func (l *Lease) Release(ctx context.Context, with func(redis.Pipeliner)) error {
	return l.release(ctx, nil, with)
}

// ReleaseAfter is Release with before's commands queued ahead of the
// deletion in the same MULTI transaction, so that they still find the key
// held, in the same round trip (on a Redis Cluster: a pipeline of their
// own just before the deletion).
func (l *Lease) ReleaseAfter(ctx context.Context, before func(redis.Pipeliner)) error {
	return l.release(ctx, before, nil)
}

func (l *Lease) release(ctx context.Context, before, after func(redis.Pipeliner)) error {
	var err error
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		l.cancel(errReleased)
		ctx := context.WithoutCancel(ctx)
		if redisconn.IsCluster(l.rc) {
			if before != nil {
				_, err = l.rc.Pipelined(ctx, func(p redis.Pipeliner) error { before(p); return nil })
			}
			// The key goes whatever before did: a lease left behind
			// blocks others for TTL.
			err = errors.Join(err, releaseScript.Run(ctx, l.rc, []string{l.key}, l.owner).Err())
			if err == nil && after != nil {
				_, err = l.rc.Pipelined(ctx, func(p redis.Pipeliner) error { after(p); return nil })
			}
		} else {
			_, err = l.rc.TxPipelined(ctx, func(p redis.Pipeliner) error {
				if before != nil {
					before(p)
				}
				releaseScript.Eval(ctx, p, []string{l.key}, l.owner)
				if after != nil {
					after(p)
				}
				return nil
			})
		}
		if err != nil {
			err = fmt.Errorf("lease %s: release (it expires on its own): %w", l.key, err)
		}
	})
	return err
}

// keep renews the key every TTL/3 until the lease is released or lost.
func (l *Lease) keep() {
	defer close(l.done)
	clk := clock.Or(l.opt.Clock)
	ttl := l.opt.TTL
	ms := strconv.FormatInt(ttl.Milliseconds(), 10)
	confirmed := clk.Now()
	t := clk.NewTicker(ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C():
		}
		ctx, cancel := context.WithTimeout(context.Background(), ttl/4)
		n, err := renewScript.Run(ctx, l.rc, []string{l.key}, l.owner, ms).Int()
		cancel()
		var lost error
		switch {
		case err == nil && n == 1:
			confirmed = clk.Now()
		case err == nil:
			lost = fmt.Errorf("%w: another holds it", ErrLost)
		case clk.Now().Sub(confirmed) > ttl/2:
			lost = fmt.Errorf("%w: cannot renew it: %v", ErrLost, err)
		}
		if lost != nil {
			l.lost.Store(true)
			l.cancel(lost)
			if l.opt.OnLost != nil {
				l.opt.OnLost(lost)
			}
			return
		}
	}
}

// newOwner returns a random owner token, the value a holder sets its key
// to.
func newOwner() string {
	b := make([]byte, 12)
	crand.Read(b)
	return hex.EncodeToString(b)
}
