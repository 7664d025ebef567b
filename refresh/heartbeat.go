package refresh

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/internal/clock"
)

// SharedTime is the time on the clock every ghlsync process shares:
// Redis's TIME. A refresh request's RequestedAt and a refresh's completion
// are both read from it, so that a process whose own clock is wrong
// neither repeats a refresh that already answers it nor skips one that
// does not. On a Redis Cluster it is the TIME of one node, always the
// same (redisTime).
func SharedTime(ctx context.Context, rc redis.UniversalClient) (time.Time, error) {
	t, err := redisTime(ctx, rc)
	if err != nil {
		return time.Time{}, fmt.Errorf("reading Redis's clock: %w", err)
	}
	return t.UTC(), nil
}

// heartbeat is a worker's proof of life: a key that the worker renews and
// that its refresh locks name, so that a lock whose worker stopped beating
// can be taken over at once.
type heartbeat struct {
	mu sync.Mutex
	// id names the worker while Heartbeat runs; "" otherwise.
	id string
	// confirmed is when the last renewal was confirmed, in Unix
	// nanoseconds on the refresher's clock.
	confirmed atomic.Int64
}

// ownerPrefix is the start of the owner token of a lock taken now, and
// whether it names a beating worker.
func (h *heartbeat) ownerPrefix() (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.id == "" {
		// Without a heartbeat a lock is freed by its expiry only.
		return "", false
	}
	return ownerPrefix + h.id + ".", true
}

// fresh reports whether the heartbeat was confirmed within d of now.
func (h *heartbeat) fresh(now time.Time, d time.Duration) bool {
	return now.Sub(time.Unix(0, h.confirmed.Load())) < d
}

// Heartbeat keeps this worker's heartbeat key alive until ctx is done: it
// writes the key (with HeartbeatTTL) before it returns, and renews it every
// HeartbeatTTL/3 from a goroutine. From then on the locks this Refresher
// takes name the worker, so that if it dies another worker's Recover takes
// its refreshes over as soon as the key expires, rather than after the
// lock's own TTL; and a lock counts as lost to its holder once no renewal
// was confirmed for HeartbeatTTL/2, before others can take it. stop ends
// the heartbeat and deletes the key; call it once nothing of this worker
// refreshes any more.
func (r *Refresher) Heartbeat(ctx context.Context) (stop func(), err error) {
	b := make([]byte, 6)
	crand.Read(b)
	host, _ := os.Hostname()
	id := hex.EncodeToString(b)
	key, ttl := keyWorker+id, r.heartbeatTTL()
	// The value is for an operator looking at Redis.
	value := fmt.Sprintf("host=%s pid=%d", host, os.Getpid())
	beat := func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, ttl/3)
		defer cancel()
		if err := r.Redis.Set(ctx, key, value, ttl).Err(); err != nil {
			return err
		}
		r.hb.confirmed.Store(r.now().UnixNano())
		return nil
	}
	if err := beat(ctx); err != nil {
		return nil, fmt.Errorf("refresh: worker heartbeat: %w", err)
	}
	r.hb.mu.Lock()
	r.hb.id = id
	r.hb.mu.Unlock()

	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := clock.Or(r.Clock).NewTicker(ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C():
			}
			if err := beat(ctx); err != nil && ctx.Err() == nil {
				r.log().Warn("renewing the worker heartbeat", "worker", id, "err", err)
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
			r.hb.mu.Lock()
			r.hb.id = ""
			r.hb.mu.Unlock()
			dctx, dcancel := context.WithTimeout(context.Background(), time.Second)
			defer dcancel()
			r.Redis.Del(dctx, key)
		})
	}, nil
}
