// Package ratelimit keeps every worker together inside GHL's per-location
// rate limit (100 requests per 10 s per app and location, GHL.md).
//
// The limiter is an exact sliding-window log in Redis, one sorted set per
// location whose members are the requests granted, scored by the time they
// were granted. One Lua script prunes, counts and grants atomically, so any
// number of workers share it; it reads the time from Redis (TIME), so the
// workers' clocks do not matter.
//
// The window is GHL's interval plus a Margin. GHL counts a request when it
// arrives, we when we grant it; requests travel for different times, so
// grants spread over W can arrive at GHL within less than W. Counting over
// W+Margin keeps any GHL window of W under the limit as long as the spread
// of transit times stays under Margin. The cost is Margin/W of the
// throughput: 2.5% for the default 250 ms.
//
// GHL's answers tune the limiter (Observe): a smaller X-RateLimit-Max or a
// longer interval than configured is adopted for the location, and an
// X-RateLimit-Remaining lower than our own log explains (another client of
// the same app and location spends the quota too) adds as many placeholder
// grants, which slow everyone down for one window. A 429 that comes anyway
// pauses the location for the interval GHL gives (Pause).
package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"
)

// GHL's documented burst limit, the defaults of Limiter.
const (
	DefaultLimit    = 100
	DefaultInterval = 10 * time.Second
	DefaultMargin   = 250 * time.Millisecond
)

// Limiter grants GHL requests per location. Its zero value is not usable;
// set Redis. It is safe for concurrent use, also across processes sharing
// the Redis.
type Limiter struct {
	Redis redis.UniversalClient
	// Limit requests per Interval (DefaultLimit, DefaultInterval when
	// zero), counted over Interval+Margin (DefaultMargin when zero; a
	// negative Margin means none).
	Limit    int
	Interval time.Duration
	Margin   time.Duration
	// Prefix of the Redis keys; "ghlsync:ratelimit:" when empty.
	Prefix string
}

// Grant is one granted request: when Redis granted it, to match GHL's
// answer to it in Observe.
type Grant struct {
	// At is the Redis time of the grant, in microseconds since the epoch.
	At int64
}

func (l *Limiter) limit() int {
	if l.Limit > 0 {
		return l.Limit
	}
	return DefaultLimit
}

func (l *Limiter) interval() time.Duration {
	if l.Interval > 0 {
		return l.Interval
	}
	return DefaultInterval
}

func (l *Limiter) margin() time.Duration {
	switch {
	case l.Margin < 0:
		return 0
	case l.Margin == 0:
		return DefaultMargin
	}
	return l.Margin
}

// keys returns the location's keys: the log (a sorted set) and its state (a
// hash: pause_until, max, interval). The braces put both in one Redis
// Cluster slot, as a script's keys must be.
func (l *Limiter) keys(loc string) []string {
	p := l.Prefix
	if p == "" {
		p = "ghlsync:ratelimit:"
	}
	return []string{p + "{" + loc + "}:log", p + "{" + loc + "}:state"}
}

// acquireScript grants a request if the location is not paused and fewer
// than the limit were granted within the window; else it says how long to
// wait. The log is pruned to twice the window: Observe looks back that far.
//
// KEYS: log, state. ARGV: limit, interval µs, margin µs, member suffix.
// Returns {granted 0|1, wait µs, now µs}.
var acquireScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local st = redis.call('HMGET', KEYS[2], 'pause_until', 'max', 'interval')
local pause = tonumber(st[1] or '0') or 0
if pause > now then
	return {0, pause - now, now}
end
local limit = tonumber(ARGV[1])
local max = tonumber(st[2] or '0') or 0
if max > 0 and max < limit then limit = max end
local interval = tonumber(ARGV[2])
local seen = tonumber(st[3] or '0') or 0
if seen > interval then interval = seen end
local window = interval + tonumber(ARGV[3])
-- Scores are whole microseconds: "> now - window" is ">= now - window + 1".
-- Numbers, not strings, go to Redis: Lua would print them with 14 digits.
local from = now - window + 1
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 2 * window)
local used = redis.call('ZCOUNT', KEYS[1], from, '+inf')
if used < limit then
	redis.call('ZADD', KEYS[1], now, ARGV[4])
	redis.call('PEXPIRE', KEYS[1], math.ceil(2 * window / 1000))
	return {1, 0, now}
end
-- The grant that must leave the window before one more fits.
local e = redis.call('ZRANGEBYSCORE', KEYS[1], from, '+inf', 'WITHSCORES', 'LIMIT', used - limit, 1)
return {0, tonumber(e[2]) + window - now, now}
`)

// Wait blocks until a request to GHL for loc may be sent, or ctx is done.
// The Grant it returns goes to Observe with GHL's answer.
func (l *Limiter) Wait(ctx context.Context, loc string) (Grant, error) {
	keys := l.keys(loc)
	suffix := randSuffix()
	for {
		res, err := acquireScript.Run(ctx, l.Redis, keys,
			l.limit(), l.interval().Microseconds(), l.margin().Microseconds(), suffix).Int64Slice()
		if err != nil {
			return Grant{}, fmt.Errorf("ratelimit %s: %w", loc, err)
		}
		if len(res) != 3 {
			return Grant{}, fmt.Errorf("ratelimit %s: unexpected script answer %v", loc, res)
		}
		if res[0] == 1 {
			return Grant{At: res[2]}, nil
		}
		// Waiters of one location wake at about the same time; a little
		// jitter spreads their retries over a few milliseconds.
		wait := time.Duration(res[1])*time.Microsecond + time.Duration(mrand.Int64N(int64(5*time.Millisecond)))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return Grant{}, fmt.Errorf("ratelimit %s: %w", loc, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// observeScript adopts GHL's stated limits and reconciles the log with
// X-RateLimit-Remaining. GHL counted max-remaining requests in the window
// that ended when our request arrived: of ours, those granted in the window
// that ends with our request's grant (transit times within the margin). A
// grant made after ours went out after it, so GHL had not counted it; the
// log is therefore counted over (grant-window, grant] only, and when it
// holds fewer grants there than GHL counted, someone else spends the
// quota: the difference is added as placeholder grants.
//
// KEYS: log, state. ARGV: header max, header remaining, header interval µs,
// configured interval µs, margin µs, grant time µs, member suffix.
// Returns the number of placeholders added.
var observeScript = redis.NewScript(`
local hmax = tonumber(ARGV[1])
local remaining = tonumber(ARGV[2])
local hinterval = tonumber(ARGV[3])
local interval = tonumber(ARGV[4])
if hmax > 0 then
	redis.call('HSET', KEYS[2], 'max', hmax)
end
if hinterval > 0 then
	redis.call('HSET', KEYS[2], 'interval', hinterval)
	if hinterval > interval then interval = hinterval end
end
redis.call('PEXPIRE', KEYS[2], 86400000)
if hmax <= 0 then return 0 end
local window = interval + tonumber(ARGV[5])
local at = tonumber(ARGV[6])
local ours = redis.call('ZCOUNT', KEYS[1], at - window + 1, at)
local missing = (hmax - remaining) - ours
if missing <= 0 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = 1, missing do
	redis.call('ZADD', KEYS[1], now, ARGV[7] .. ':' .. i)
end
redis.call('PEXPIRE', KEYS[1], math.ceil(2 * window / 1000))
return missing
`)

// Rate is what GHL's rate-limit headers said on an answer.
type Rate struct {
	Max       int           // X-RateLimit-Max: requests allowed per Interval
	Remaining int           // X-RateLimit-Remaining in the current interval
	Interval  time.Duration // X-RateLimit-Interval-Milliseconds
}

// Observe tells the limiter GHL's rate-limit headers on the answer to the
// request of grant g. Answers without the headers are ignored.
func (l *Limiter) Observe(ctx context.Context, loc string, g Grant, rate Rate) error {
	if rate.Max <= 0 && rate.Interval <= 0 {
		return nil
	}
	err := observeScript.Run(ctx, l.Redis, l.keys(loc),
		rate.Max, rate.Remaining, rate.Interval.Microseconds(), l.interval().Microseconds(),
		l.margin().Microseconds(), g.At, randSuffix()).Err()
	if err != nil {
		return fmt.Errorf("ratelimit %s: observe: %w", loc, err)
	}
	return nil
}

// pauseScript pauses the location until now+d unless it is paused longer.
// KEYS: state. ARGV: d µs. Returns the pause left, µs.
var pauseScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local untilv = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('HGET', KEYS[1], 'pause_until') or '0') or 0
if cur > untilv then untilv = cur end
redis.call('HSET', KEYS[1], 'pause_until', untilv)
redis.call('PEXPIRE', KEYS[1], math.max(86400000, math.ceil((untilv - now) / 1000)))
return untilv - now
`)

// Pause stops every grant for loc for d (a 429's interval); a longer pause
// in force stays. It returns how long the location is now paused.
func (l *Limiter) Pause(ctx context.Context, loc string, d time.Duration) (time.Duration, error) {
	if d <= 0 {
		return 0, nil
	}
	left, err := pauseScript.Run(ctx, l.Redis, l.keys(loc)[1:], d.Microseconds()).Int64()
	if err != nil {
		return 0, fmt.Errorf("ratelimit %s: pause: %w", loc, err)
	}
	return time.Duration(left) * time.Microsecond, nil
}

// randSuffix names a log member: 48 random bits keep grants of the same
// microsecond apart.
func randSuffix() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}
