package tasks

import (
	"errors"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/internal/ratelimit"
)

// RetryDelay is the workers' asynq RetryDelayFunc: a 429 waits what GHL
// said, a location the limiter paused (its daily quota spent) waits out the
// pause; everything else backs off exponentially with full jitter, from 1 s
// for token tasks (a retry must come inside GHL's grace window) and 10 s
// for the rest, capped at 10 minutes.
func RetryDelay(n int, err error, t *asynq.Task) time.Duration {
	if d := ghl.RetryAfter(err); d > 0 {
		return d
	}
	var pe *ratelimit.PausedError
	if errors.As(err, &pe) && pe.RetryAfter > 0 {
		return pe.RetryAfter
	}
	base := 10 * time.Second
	if t.Type() == TypeTokenRefresh || t.Type() == TypeTokenRefreshBatch {
		base = time.Second
	}
	d := min(base<<min(n, 16), 10*time.Minute)
	return d/2 + rand.N(d/2+1)
}

// IsFailure says which errors count as failures: a 429, or a location
// paused for GHL's limits (the daily quota), is GHL asking us to wait, not
// a failure; asynq then retries the task without counting the retry.
func IsFailure(err error) bool {
	return !ghl.IsRateLimited(err) && !errors.As(err, new(*ratelimit.PausedError))
}
