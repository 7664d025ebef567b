// Package ratelimit keeps every worker together inside GHL's per-location
// rate limit (100 requests per 10 s per app and location, GHL.md).
//
// The limiter is an exact sliding-window log in Redis, one sorted set per
// location whose members are the requests granted, scored by the time they
// were granted. One Lua script prunes, counts and grants atomically, so any
// number of workers share it; it reads the time from Redis (TIME), so the
// workers' clocks do not matter.
//
// GHL counts a request when it arrives, somewhere between our grant and
// our reading of its answer, and keeps counting it for its interval W. So
// a grant is scored in the log as in flight (MaxFlight ahead of its grant,
// counted in every window meanwhile) until Observe hears its answer, and
// from then on at the time of the answer: GHL counted it no later than
// that, so it has left GHL's window before it leaves ours, whatever the
// transit times. Counting over W (plus a small Margin for GHL's clock)
// then never lets GHL count more than the limit of ours, at the cost of a
// round trip per window. A grant whose answer never comes (the worker
// died) is counted for MaxFlight+W.
//
// GHL's answers tune the limiter (Observe): a smaller X-RateLimit-Max or a
// longer interval than configured is adopted for the location, and an
// X-RateLimit-Remaining lower than our own log can explain (another client
// of the same app and location spends the quota too) adds as many
// placeholder grants, which slow everyone down for one window. Our log can
// explain every grant GHL may have counted: each one answered within W
// before the request (or still in flight), placeholders included, so that
// none of ours, and no foreign use already booked, is booked as foreign. A
// 429 that comes anyway (only another client's use can cause one) pauses
// the location for the interval GHL gives (Pause).
//
// GHL's daily quota (200,000 requests per app and location) is kept from
// X-RateLimit-Daily-Remaining, as Observe hears it: below DailySlowBelow
// of the day's quota the location's burst limit shrinks in proportion, to
// one request per interval at the end, and once it is spent the location
// is paused for DailyProbe. GHL does not say when its day ends (it is not
// UTC midnight), so the pause is not "until midnight": when it is over, the
// next request tells whether the quota is back (X-RateLimit-Daily-Remaining
// up again) or not (a 429, or 0 again: paused for another DailyProbe). A
// pause longer than MaxWait is not waited out: Wait returns a *PausedError,
// on which a task is rescheduled rather than held.
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
	DefaultMargin   = 20 * time.Millisecond
	// DefaultMaxFlight is over the GHL client's timeout (30 s): no
	// answer comes later.
	DefaultMaxFlight = time.Minute
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
	// MaxFlight is how long a grant without an answer (Observe) is
	// counted as in flight; DefaultMaxFlight when zero.
	MaxFlight time.Duration
	// Prefix of the Redis keys; "ghlsync:ratelimit:" when empty.
	Prefix string
	// DailySlowBelow is the part of the daily quota (0 to 1) below which
	// the location is slowed; DefaultDailySlowBelow when zero, none when
	// negative.
	DailySlowBelow float64
	// DailyProbe is how long a location whose daily quota is spent is
	// paused before a request asks GHL again; DefaultDailyProbe when zero.
	DailyProbe time.Duration
	// MaxWait is the longest Wait waits for a grant; a pause that lasts
	// longer makes Wait return a *PausedError at once. DefaultMaxWait
	// when zero.
	MaxWait time.Duration
}

// Defaults of the daily quota's handling.
const (
	DefaultDailySlowBelow = 0.05
	DefaultDailyProbe     = 30 * time.Minute
	DefaultMaxWait        = time.Minute
)

// PausedError says the location is paused for longer than Limiter.MaxWait
// (its daily quota is spent, or a 429 asked for a long wait): try again
// after RetryAfter rather than hold a worker.
type PausedError struct {
	Location   string
	RetryAfter time.Duration
	// Daily: the pause is for GHL's daily quota.
	Daily bool
	// HandBack: the wait is longer than the caller's WithHandBack, not a
	// pause past MaxWait: the caller is to hand its work back for
	// RetryAfter rather than hold a worker slot.
	HandBack bool
}

func (e *PausedError) Error() string {
	if e.HandBack && !e.Daily {
		return fmt.Sprintf("ratelimit %s: the location's limit allows its next request in %s", e.Location, e.RetryAfter.Round(time.Millisecond))
	}
	if e.Daily {
		return fmt.Sprintf("ratelimit %s: GHL's daily quota for the location is spent; asking again in %s", e.Location, e.RetryAfter.Round(time.Second))
	}
	return fmt.Sprintf("ratelimit %s: paused for %s", e.Location, e.RetryAfter.Round(time.Second))
}

func (l *Limiter) dailySlowBelow() float64 {
	switch {
	case l.DailySlowBelow < 0:
		return 0
	case l.DailySlowBelow == 0:
		return DefaultDailySlowBelow
	}
	return min(l.DailySlowBelow, 1)
}

func (l *Limiter) dailyProbe() time.Duration {
	if l.DailyProbe > 0 {
		return l.DailyProbe
	}
	return DefaultDailyProbe
}

func (l *Limiter) maxWait() time.Duration {
	if l.MaxWait > 0 {
		return l.MaxWait
	}
	return DefaultMaxWait
}

// Grant is one granted request: when Redis granted it, and its entry in
// the log, to match GHL's answer to it in Observe.
type Grant struct {
	// At is the Redis time of the grant, in microseconds since the epoch.
	At     int64
	member string
}

// handBackKey carries WithHandBack's duration.
type handBackKey struct{}

// WithHandBack returns ctx under which Wait does not wait longer than d
// for a grant (the location's window is full, or it is paused): it returns
// a *PausedError with HandBack set and the wait as RetryAfter, and grants
// nothing. A task that can hand its work back (and take it up after
// RetryAfter) then frees its worker for another location.
func WithHandBack(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, handBackKey{}, d)
}

func (l *Limiter) maxFlight() time.Duration {
	if l.MaxFlight > 0 {
		return l.MaxFlight
	}
	return DefaultMaxFlight
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
// wait. A grant is logged in flight: scored max flight ahead, until
// Observe scores it at its answer. The log is pruned to twice the window:
// Observe looks back that far.
//
// Below the slow mark of the daily quota (ARGV[5] of daily_limit) the
// limit is cut in proportion to what remains, to one at the end.
//
// KEYS: log, state. ARGV: limit, interval µs, margin µs, member suffix,
// daily slow mark (a fraction), max flight µs. Returns {granted 0|1, wait µs, now µs,
// why it waits: 0 the window, 1 a pause, 2 a pause for the daily quota}.
var acquireScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local st = redis.call('HMGET', KEYS[2], 'pause_until', 'max', 'interval', 'daily_limit', 'daily_remaining', 'daily_pause')
local pause = tonumber(st[1] or '0') or 0
if pause > now then
	local why = 1
	if st[6] == '1' then why = 2 end
	return {0, pause - now, now, why}
end
local limit = tonumber(ARGV[1])
local max = tonumber(st[2] or '0') or 0
if max > 0 and max < limit then limit = max end
local dlimit = tonumber(st[4] or '0') or 0
local dleft = tonumber(st[5] or '-1') or -1
local mark = dlimit * tonumber(ARGV[5])
if dlimit > 0 and dleft >= 0 and dleft < mark then
	limit = math.max(1, math.floor(limit * dleft / mark))
end
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
	local flight = tonumber(ARGV[6])
	redis.call('ZADD', KEYS[1], now + flight, ARGV[4])
	redis.call('PEXPIRE', KEYS[1], math.ceil((2 * window + flight) / 1000))
	return {1, 0, now, 0}
end
-- The grant that must leave the window before one more fits; one still in
-- flight leaves a window after its answer, which is not before now.
local e = redis.call('ZRANGEBYSCORE', KEYS[1], from, '+inf', 'WITHSCORES', 'LIMIT', used - limit, 1)
local left = tonumber(e[2])
if left > now then left = now end
return {0, left + window - now, now, 0}
`)

// Wait blocks until a request to GHL for loc may be sent, or ctx is done.
// The Grant it returns goes to Observe with GHL's answer, or with none
// when the request got no answer: until then it is counted as in flight.
// A location paused for longer than MaxWait gets a *PausedError at once,
// and so does a wait longer than WithHandBack's.
func (l *Limiter) Wait(ctx context.Context, loc string) (Grant, error) {
	keys := l.keys(loc)
	suffix := randSuffix()
	handBack, _ := ctx.Value(handBackKey{}).(time.Duration)
	for {
		res, err := acquireScript.Run(ctx, l.Redis, keys,
			l.limit(), l.interval().Microseconds(), l.margin().Microseconds(), suffix, l.dailySlowBelow(),
			l.maxFlight().Microseconds()).Int64Slice()
		if err != nil {
			return Grant{}, fmt.Errorf("ratelimit %s: %w", loc, err)
		}
		if len(res) != 4 {
			return Grant{}, fmt.Errorf("ratelimit %s: unexpected script answer %v", loc, res)
		}
		if res[0] == 1 {
			return Grant{At: res[2], member: suffix}, nil
		}
		d := time.Duration(res[1]) * time.Microsecond
		if res[3] > 0 && d > l.maxWait() {
			return Grant{}, &PausedError{Location: loc, RetryAfter: d, Daily: res[3] == 2}
		}
		if handBack > 0 && d > handBack {
			return Grant{}, &PausedError{Location: loc, RetryAfter: d, Daily: res[3] == 2, HandBack: true}
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

// observeScript scores the grant at its answer, adopts GHL's stated
// limits and reconciles the log with X-RateLimit-Remaining.
//
// GHL counted max-remaining requests in the window W that ended when our
// request arrived, after its grant and before now. Of ours, it can have
// counted only those granted before now (every grant in the log) whose
// answer came after the grant minus W, or that are still in flight:
// every member scored after grant-window. When GHL counted more than
// that, someone else spends the quota, and the difference is added as
// placeholder grants, scored now. The count is an upper bound of ours, so
// none of our grants is ever booked as foreign use; it includes the
// placeholders added before, so no foreign use is booked twice. A grant
// made while our request was in flight may have overtaken it, so it
// counts as ours too.
//
// The daily quota's headers, when sent, are kept in the state; a spent
// quota pauses the location for the probe time (a longer pause stays) and
// marks the pause as the daily quota's.
//
// KEYS: log, state. ARGV: header max, header remaining, header interval µs,
// configured interval µs, margin µs, grant time µs, placeholder prefix,
// daily limit, daily remaining, probe µs, the grant's member ("" none).
// Returns the number of placeholders added.
var observeScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if ARGV[11] ~= '' then
	redis.call('ZADD', KEYS[1], 'XX', now, ARGV[11])
end
local hmax = tonumber(ARGV[1])
local remaining = tonumber(ARGV[2])
local hinterval = tonumber(ARGV[3])
local interval = tonumber(ARGV[4])
local dlimit = tonumber(ARGV[8])
if dlimit > 0 then
	local dleft = tonumber(ARGV[9])
	redis.call('HSET', KEYS[2], 'daily_limit', dlimit, 'daily_remaining', dleft)
	if dleft <= 0 then
		local untilv = now + tonumber(ARGV[10])
		local cur = tonumber(redis.call('HGET', KEYS[2], 'pause_until') or '0') or 0
		if cur < untilv then
			redis.call('HSET', KEYS[2], 'pause_until', untilv, 'daily_pause', '1')
		end
	end
end
if hmax > 0 then
	redis.call('HSET', KEYS[2], 'max', hmax)
end
if hinterval > 0 then
	redis.call('HSET', KEYS[2], 'interval', hinterval)
	if hinterval > interval then interval = hinterval end
end
if hmax <= 0 and hinterval <= 0 and dlimit <= 0 then return 0 end
redis.call('PEXPIRE', KEYS[2], 86400000)
if hmax <= 0 then return 0 end
local window = interval + tonumber(ARGV[5])
local at = tonumber(ARGV[6])
local ours = redis.call('ZCOUNT', KEYS[1], at - window + 1, '+inf')
local missing = (hmax - remaining) - ours
if missing <= 0 then return 0 end
for i = 1, missing do
	redis.call('ZADD', KEYS[1], now, ARGV[7] .. ':' .. i)
end
if redis.call('PTTL', KEYS[1]) < math.ceil(2 * window / 1000) then
	redis.call('PEXPIRE', KEYS[1], math.ceil(2 * window / 1000))
end
return missing
`)

// Rate is what GHL's rate-limit headers said on an answer.
type Rate struct {
	Max       int           // X-RateLimit-Max: requests allowed per Interval
	Remaining int           // X-RateLimit-Remaining in the current interval
	Interval  time.Duration // X-RateLimit-Interval-Milliseconds
	// DailyLimit and DailyRemaining are X-RateLimit-Limit-Daily and
	// X-RateLimit-Daily-Remaining; DailyRemaining counts only when
	// DailyLimit is positive (GHL sends both or neither).
	DailyLimit     int
	DailyRemaining int
}

// Observe tells the limiter that the request of grant g is answered, with
// GHL's rate-limit headers on the answer: the zero Rate when it had none,
// or the request got no answer (GHL may have counted it all the same).
// Every grant of Wait comes here once, as soon as its answer is read: until
// then it is counted as in flight.
func (l *Limiter) Observe(ctx context.Context, loc string, g Grant, rate Rate) error {
	if g.member == "" && rate.Max <= 0 && rate.Interval <= 0 && rate.DailyLimit <= 0 {
		return nil
	}
	err := observeScript.Run(ctx, l.Redis, l.keys(loc),
		rate.Max, rate.Remaining, rate.Interval.Microseconds(), l.interval().Microseconds(),
		l.margin().Microseconds(), g.At, randSuffix(),
		max(rate.DailyLimit, 0), max(rate.DailyRemaining, 0), l.dailyProbe().Microseconds(), g.member).Err()
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
if cur > untilv then
	untilv = cur
else
	redis.call('HSET', KEYS[1], 'pause_until', untilv, 'daily_pause', '0')
end
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
