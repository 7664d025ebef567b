// Package lease keeps Redis leases: a key set with SET NX PX that its
// holder renews while it works, so that a holder that dies frees the key
// within its TTL.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrLost says a lease can no longer be vouched for: another holder has
// it, or no renewal was confirmed for half its TTL.
var ErrLost = errors.New("lease lost")

// NewOwner returns a random owner token, the value a holder sets its key
// to.
func NewOwner() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

var renewScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`)

// Keep renews key, held by owner, every ttl/3 until stop is closed. It
// calls lost once, and returns, when Redis says another holds the key, or
// when no renewal was confirmed for ttl/2: past that point the key may
// have expired under the holder (Redis unreachable), so the holder must
// stop acting as one.
func Keep(rc redis.UniversalClient, key, owner string, ttl time.Duration, stop <-chan struct{}, lost func(error)) {
	ms := strconv.FormatInt(ttl.Milliseconds(), 10)
	confirmed := time.Now()
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), ttl/4)
		n, err := renewScript.Run(ctx, rc, []string{key}, owner, ms).Int()
		cancel()
		switch {
		case err == nil && n == 1:
			confirmed = time.Now()
		case err == nil:
			lost(fmt.Errorf("%w: another holds it", ErrLost))
			return
		case time.Since(confirmed) > ttl/2:
			lost(fmt.Errorf("%w: cannot renew it: %v", ErrLost, err))
			return
		}
	}
}
