package refresh

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/internal/redisconn"
)

// On a Redis Cluster the keys of one script (or MULTI) must share a hash
// slot, and the refresh keys do not: a location's lock and its pending
// slot hash apart, the in-flight set is one key for every location, and a
// worker's heartbeat is a key of its own. Hash tags would put them
// together only under new names, and a rolling upgrade would then run old
// and new workers on two different lock keys per location, each refreshing
// beside the other. So the names stay, and on a cluster each script of
// this file's callers becomes commands on one key each, ordered and
// conditioned so that what the script guaranteed still holds: the lock
// decides who refreshes, a mark or slot is cleared only when it is the one
// its clearer set or read, and the token version's compare-and-set in the
// store refuses any late or stale write of a token either way.

// clockKey routes the shared clock's TIME on a cluster: every process
// reads the clock of the one node that owns this key's slot, not of
// whichever node a keyless command lands on.
const clockKey = "ghlsync:clock"

var clockScript = redis.NewScript(`return redis.call("TIME")`)

// redisTime reads Redis's TIME: on a cluster, that of clockKey's node.
func redisTime(ctx context.Context, rc redis.UniversalClient) (time.Time, error) {
	if !redisconn.IsCluster(rc) {
		return rc.Time(ctx).Result()
	}
	v, err := clockScript.Run(ctx, rc, []string{clockKey}).StringSlice()
	if err != nil {
		return time.Time{}, err
	}
	if len(v) != 2 {
		return time.Time{}, fmt.Errorf("TIME answered %v", v)
	}
	sec, err1 := strconv.ParseInt(v[0], 10, 64)
	usec, err2 := strconv.ParseInt(v[1], 10, 64)
	if err1 != nil || err2 != nil {
		return time.Time{}, fmt.Errorf("TIME answered %v", v)
	}
	return time.Unix(sec, usec*1000), nil
}

// markInFlight adds loc to the in-flight set, scored with the time on the
// shared clock (SharedTime) in milliseconds, and returns the score:
// whichever worker takes the mark up measures GHL's grace window from it.
// It is rounded up to the millisecond: a mark that read earlier than the
// refresh stored just before it would count as answered by that one. It
// also returns the shared clock's time as read, not rounded, with the
// local monotonic time its answer arrived at (see answeredAt). One round
// trip but on a Redis Cluster, where the shared clock is one node's
// (clockKey's) and the set may live on another.
func (r *Refresher) markInFlight(ctx context.Context, loc string) (float64, markTime, error) {
	if !redisconn.IsCluster(r.Redis) {
		v, err := markScript.Run(ctx, r.Redis, []string{keyInFlight}, loc).Slice()
		if err != nil {
			return 0, markTime{}, err
		}
		got := time.Now()
		score, at, err := parseMark(v)
		if err != nil {
			return 0, markTime{}, err
		}
		return score, markTime{shared: at, local: got}, nil
	}
	markedAt, err := SharedTime(ctx, r.Redis)
	if err != nil {
		return 0, markTime{}, err
	}
	got := time.Now()
	score := float64((markedAt.UnixNano() + int64(time.Millisecond) - 1) / int64(time.Millisecond))
	return score, markTime{shared: markedAt, local: got}, r.Redis.ZAdd(ctx, keyInFlight, redis.Z{Score: score, Member: loc}).Err()
}

// markTime is when an in-flight mark was set: shared, Redis's time as the
// mark read it, and local, this process's (monotonic) time when the answer
// arrived, necessarily after it.
type markTime struct{ shared, local time.Time }

// markScript scores ARGV[1] in the sorted set KEYS[1] with Redis's time in
// milliseconds, rounded up, and returns the score and the time it read
// (TIME's seconds and microseconds).
var markScript = redis.NewScript(`
local t = redis.call("TIME")
local ms = tonumber(t[1]) * 1000 + math.floor((tonumber(t[2]) + 999) / 1000)
redis.call("ZADD", KEYS[1], ms, ARGV[1])
return {ms, t[1], t[2]}`)

// lockMarkScript marks ARGV[2] in flight in the sorted set KEYS[2], as
// markScript does, while the lock KEYS[1] is ARGV[1]'s (it runs in the
// MULTI that takes the lock, see tryLock), unless a mark is there already:
// that one, left by a refresh that did not settle, keeps its time. It
// returns markScript's answer and the earlier mark's score, or 0 when the
// lock is another's (not nil, which would fail the MULTI's answer).
var lockMarkScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) ~= ARGV[1] then return 0 end
local t = redis.call("TIME")
local ms = tonumber(t[1]) * 1000 + math.floor((tonumber(t[2]) + 999) / 1000)
local prev = redis.call("ZSCORE", KEYS[2], ARGV[2])
if not prev then redis.call("ZADD", KEYS[2], ms, ARGV[2]) end
return {ms, t[1], t[2], prev}`)

// lockMarked records on lk what lockMarkScript answered when the lock
// was taken: the mark it set, or the earlier one it found.
func (lk *lock) lockMarked(cmd *redis.Cmd, got time.Time) error {
	v, err := cmd.Slice()
	if err != nil {
		return fmt.Errorf("marking in flight: %w", err)
	}
	if len(v) != 4 {
		return fmt.Errorf("marking in flight: Redis answered %v", v)
	}
	if v[3] != nil {
		prev, err := strconv.ParseFloat(fmt.Sprint(v[3]), 64)
		if err != nil {
			return fmt.Errorf("marking in flight: Redis answered %v", v)
		}
		lk.mark, lk.markRead = prev, true
		return nil
	}
	score, at, err := parseMark(v[:3])
	if err != nil {
		return err
	}
	lk.mark, lk.ownMark, lk.marked = score, true, markTime{shared: at, local: got}
	return nil
}

// parseMark reads markScript's answer.
func parseMark(v []any) (float64, time.Time, error) {
	if len(v) == 3 {
		ms, ok := v[0].(int64)
		sec, err1 := strconv.ParseInt(fmt.Sprint(v[1]), 10, 64)
		usec, err2 := strconv.ParseInt(fmt.Sprint(v[2]), 10, 64)
		if ok && err1 == nil && err2 == nil {
			return float64(ms), time.Unix(sec, usec*1000).UTC(), nil
		}
	}
	return 0, time.Time{}, fmt.Errorf("marking in flight: Redis answered %v", v)
}

// takeOver deletes loc's lock while it is still owner's and owner's
// worker has no heartbeat, and reports whether it did.
func (r *Refresher) takeOver(ctx context.Context, loc, worker, owner string) bool {
	if !redisconn.IsCluster(r.Redis) {
		n, err := takeOverScript.Run(ctx, r.Redis, []string{keyLock + loc, keyWorker + worker}, owner).Int()
		return err == nil && n == 1
	}
	// The heartbeat first, then the lock's owner. A heartbeat that comes
	// back in between finds its lock taken over, as it would a moment after
	// the script; the worker's next renewal then finds its lease lost.
	if n, err := r.Redis.Exists(ctx, keyWorker+worker).Result(); err != nil || n != 0 {
		return false
	}
	n, err := deleteIfScript.Run(ctx, r.Redis, []string{keyLock + loc}, owner).Int()
	return err == nil && n == 1
}

// dropStale removes loc's in-flight mark of score while loc's lock is
// free.
func (r *Refresher) dropStale(ctx context.Context, loc string, score float64) error {
	if !redisconn.IsCluster(r.Redis) {
		return dropStaleScript.Run(ctx, r.Redis, []string{keyLock + loc, keyInFlight}, loc, int64(score)).Err()
	}
	// A refresh that takes the lock in between marks the location anew,
	// with a later score, which the removal leaves alone; one that found
	// the old mark settled would have removed it itself.
	n, err := r.Redis.Exists(ctx, keyLock+loc).Result()
	if err != nil || n != 0 {
		return err
	}
	return zremIfScript.Run(ctx, r.Redis, []string{keyInFlight}, loc, int64(score)).Err()
}

// settle ends l's location's in-flight mark (when settled) and its
// pending slot while the lock is l's, on a Redis Cluster, where the lock
// cannot be checked in the script that removes them (elsewhere release
// does both in one transaction with settleScript).
func (r *Refresher) settle(ctx context.Context, l *lock, settled bool) error {
	owner, err := r.Redis.Get(ctx, keyLock+l.loc).Result()
	if errors.Is(err, redis.Nil) || (err == nil && owner != l.lease.Owner()) {
		return nil // lost: the mark and slot are the new holder's
	}
	if err != nil {
		return err
	}
	// The lock may still be lost between the check and the removals, so
	// each removes only what this holder set or read: a holder that took
	// over marks with its own score and seals a slot of its own.
	if settled && l.mark != 0 {
		if err := zremIfScript.Run(ctx, r.Redis, []string{keyInFlight}, l.loc, int64(l.mark)).Err(); err != nil {
			return err
		}
	}
	if l.pending != "" {
		return deleteIfScript.Run(ctx, r.Redis, []string{keyPending + l.loc}, l.pending).Err()
	}
	return nil
}

// deleteIfScript deletes KEYS[1] while it holds ARGV[1].
var deleteIfScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0`)

// zremIfScript removes member ARGV[1] of the sorted set KEYS[1] while its
// score is ARGV[2].
var zremIfScript = redis.NewScript(`
if tonumber(redis.call("ZSCORE", KEYS[1], ARGV[1])) == tonumber(ARGV[2]) then
  return redis.call("ZREM", KEYS[1], ARGV[1])
end
return 0`)
