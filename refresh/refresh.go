// Package refresh refreshes the OAuth token of a GHL location so that a
// single-use refresh token is spent at most once across every worker, and the
// token GHL sends back is never lost.
//
// The protocol, per location:
//
//  1. A Redis lock (SET NX with a short TTL that the holder keeps renewing)
//     lets one refresh run at a time across all workers. A request counts as
//     done when a refresh completed after it was made, so a burst of requests
//     costs one GHL call.
//  2. Before calling GHL the holder adds the location to an in-flight set.
//     If the holder dies during the call its lock expires within LockTTL and
//     any worker's Recover loop retries with the same refresh token, inside
//     GHL's 30 s grace window, so a token that GHL rotated but whose answer
//     was lost is received again.
//  3. Once GHL has answered, the new tokens are written to the database,
//     retried until the write lands. If the first write fails they are also
//     sealed into Redis (the pending slot), so that a worker that dies while
//     the database is down leaves them for the next holder of the lock. (A
//     worker that dies before its first write is covered by step 2.)
package refresh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/internal/lease"
	"github.com/ghlsync/ghlsync/internal/tokencrypt"
	"github.com/ghlsync/ghlsync/store"
)

// Outcome of a refresh request.
type Outcome string

// Outcomes.
const (
	// Refreshed: this request called GHL and stored a new token.
	Refreshed Outcome = "refreshed"
	// Fresh: nothing to do: the token was refreshed after the request was
	// made, or (unless forced) does not expire within the window.
	Fresh Outcome = "fresh"
	// NeedsReauth: GHL refused the refresh token for good.
	NeedsReauth Outcome = "needs_reauth"
	// Inactive: GHL says the location is not active; retried later.
	Inactive Outcome = "inactive"
)

// Errors a caller tells apart with errors.Is.
var (
	// ErrNeedsReauth: the location must be connected again; retrying is
	// pointless.
	ErrNeedsReauth = errors.New("the location must be connected again at " + store.ConnectPath)
	// ErrInactive: GHL says the location is not active.
	ErrInactive = errors.New("GHL says the location is not active; its token is kept and refreshed again later")
	// ErrUnknownLocation: no credential is stored for the location.
	ErrUnknownLocation = errors.New("no connected location with this id")
	// ErrBusy: another worker holds the location's lock and NoWait was set.
	ErrBusy = errors.New("another refresh of this location is running")
)

// Request asks for a location's token to be refreshed.
type Request struct {
	LocationID string
	// RequestedAt is when the refresh was asked for: a refresh completed
	// at or after it satisfies the request.
	RequestedAt time.Time
	// Force refreshes even when the token does not expire within Window.
	Force bool
	// NoWait fails with ErrBusy instead of waiting for another refresh.
	NoWait bool
}

// Result is the JSON result of a refresh. It never carries a token.
type Result struct {
	LocationID string    `json:"location_id"`
	Outcome    Outcome   `json:"outcome"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"`
	ExpiresIn  int64     `json:"expires_in_seconds,omitempty"`
	Message    string    `json:"message,omitempty"`
}

// Credentials is what the refresher needs of the store.
type Credentials interface {
	Credential(ctx context.Context, loc string) (*store.Credential, error)
	Tokens(c *store.Credential) (store.Tokens, error)
	SaveRefreshed(ctx context.Context, loc string, t store.Tokens, refreshedAt time.Time) error
	SetStatus(ctx context.Context, loc string, st store.Status, lastError string) error
}

// TokenSource spends a refresh token at GHL. *ghl.OAuthService is one.
type TokenSource interface {
	Refresh(ctx context.Context, refreshToken, userType string) (*ghl.Token, *ghl.Response, error)
}

// Refresher refreshes tokens. It is safe for concurrent use.
type Refresher struct {
	Store  Credentials
	GHL    TokenSource
	Redis  redis.UniversalClient
	Cipher *tokencrypt.Cipher
	Log    *slog.Logger
	// Window: a non-forced refresh is needed when the token expires
	// within it.
	Window time.Duration
	// LockTTL bounds how long a dead holder blocks others; the holder
	// renews it every LockTTL/3. Default 10s.
	LockTTL time.Duration
	// Grace is GHL's window in which a spent refresh token still returns
	// the token it was exchanged for. Default 30s.
	Grace time.Duration
	// CallTimeout bounds one GHL call. Default 20s, well inside Grace.
	CallTimeout time.Duration
	// SaveFor bounds how long a new token's database write is retried
	// while the lock is held; the token stays in the pending slot after.
	// Default 10m.
	SaveFor time.Duration
	// Observe, when set, is told every outcome (for metrics).
	Observe func(Outcome)
	// ObserveFailure, when set, is told the reason (FailureReason) of
	// every refresh that failed (for metrics).
	ObserveFailure func(reason string)
	Clock          clock.Clock
}

const (
	keyLock     = "ghlsync:refresh:lock:"
	keyPending  = "ghlsync:refresh:pending:"
	keyInFlight = "ghlsync:refresh:inflight"
	// pendingTTL keeps an unwritten token far longer than any database
	// outage; the refresh token it holds lives a year.
	pendingTTL = 30 * 24 * time.Hour
)

func (r *Refresher) now() time.Time { return clock.Or(r.Clock).Now() }

func (r *Refresher) log() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.Default()
}

// Validate reports a required field that is not set. Call it at start: a
// Refresher that fails it would fail its first refresh.
func (r *Refresher) Validate() error {
	for name, missing := range map[string]bool{"Store": r.Store == nil, "GHL": r.GHL == nil, "Redis": r.Redis == nil, "Cipher": r.Cipher == nil} {
		if missing {
			return fmt.Errorf("refresh.Refresher: %s is required", name)
		}
	}
	return nil
}

func (r *Refresher) lockTTL() time.Duration { return orDefault(r.LockTTL, 10*time.Second) }
func (r *Refresher) grace() time.Duration   { return orDefault(r.Grace, 30*time.Second) }

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Refresh carries out one request. The Result is meaningful also with an
// error (needs_reauth, inactive).
func (r *Refresher) Refresh(ctx context.Context, req Request) (Result, error) {
	res, err := r.refresh(ctx, req)
	if r.Observe != nil && res.Outcome != "" {
		r.Observe(res.Outcome)
	}
	if err != nil {
		r.failed(req.LocationID, err)
	}
	return res, err
}

func (r *Refresher) refresh(ctx context.Context, req Request) (Result, error) {
	loc := req.LocationID
	if req.RequestedAt.IsZero() {
		req.RequestedAt = r.now()
	}
	lk, hasPending, err := r.tryLock(ctx, loc)
	if err != nil {
		return Result{LocationID: loc}, err
	}
	if lk == nil {
		// Another refresh runs. Most requests of a burst end here: that
		// refresh, or an earlier one, already answers them.
		c, err := r.credential(ctx, loc)
		if err != nil {
			return Result{LocationID: loc}, err
		}
		if res, done := r.satisfied(c, req); done {
			return res, res.err()
		}
		if req.NoWait {
			return Result{LocationID: loc}, fmt.Errorf("refresh %s: %w", loc, ErrBusy)
		}
		if lk, hasPending, err = r.lock(ctx, loc); err != nil {
			return Result{LocationID: loc}, err
		}
	}
	clearInFlight := false
	defer func() { lk.release(clearInFlight) }()

	if hasPending {
		if err := r.writePending(ctx, lk, loc); err != nil {
			return Result{LocationID: loc}, err
		}
	}
	c, err := r.credential(ctx, loc)
	if err != nil {
		return Result{LocationID: loc}, err
	}
	if res, done := r.satisfied(c, req); done {
		clearInFlight = r.settledSince(ctx, c)
		return res, res.err()
	}
	res, settled, err := r.call(ctx, lk, c)
	clearInFlight = settled
	return res, err
}

// settledSince reports whether an in-flight mark of c's location (left by
// a refresh that died or timed out) is answered by what the database holds:
// a refresh completed after it, or the location needs reconnecting anyway.
// Otherwise the mark must stay for Recover to retry inside the grace window.
func (r *Refresher) settledSince(ctx context.Context, c *store.Credential) bool {
	score, err := r.Redis.ZScore(ctx, keyInFlight, c.LocationID).Result()
	if err != nil {
		return false // no mark (redis.Nil), or leave it to Recover
	}
	return c.Status == store.StatusNeedsReauth || c.Status == store.StatusUninstalled ||
		(c.RefreshedAt != nil && !c.RefreshedAt.Before(time.UnixMilli(int64(score))))
}

func (r *Refresher) credential(ctx context.Context, loc string) (*store.Credential, error) {
	c, err := r.Store.Credential(ctx, loc)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("refresh %s: %w", loc, ErrUnknownLocation)
	}
	if err != nil {
		return nil, fmt.Errorf("refresh %s: %w", loc, err)
	}
	return c, nil
}

// satisfied says whether c already answers req without a GHL call.
func (r *Refresher) satisfied(c *store.Credential, req Request) (Result, bool) {
	res := Result{LocationID: c.LocationID, ExpiresAt: c.ExpiresAt.UTC(), ExpiresIn: r.expiresIn(c.ExpiresAt)}
	switch {
	case c.Status == store.StatusNeedsReauth:
		res.Outcome, res.Message = NeedsReauth, reauthMessage(c.LocationID)
		return res, true
	case c.Status == store.StatusUninstalled:
		// GHL no longer honours its refresh token; a refresh would only
		// be refused.
		res.Outcome, res.Message = NeedsReauth, "location "+c.LocationID+": "+store.StatusUninstalled.Problem()
		return res, true
	case c.Status == store.StatusActive && c.RefreshedAt != nil && !c.RefreshedAt.Before(req.RequestedAt):
		res.Outcome = Fresh
		return res, true
	case c.Status == store.StatusActive && !req.Force && c.ExpiresAt.After(r.now().Add(r.Window)):
		res.Outcome = Fresh
		return res, true
	}
	return res, false
}

func (res Result) err() error {
	switch res.Outcome {
	case NeedsReauth:
		return fmt.Errorf("refresh %s: %w", res.LocationID, ErrNeedsReauth)
	case Inactive:
		return fmt.Errorf("refresh %s: %w", res.LocationID, ErrInactive)
	}
	return nil
}

func reauthMessage(loc string) string {
	return "location " + loc + ": " + store.StatusNeedsReauth.Problem()
}

func (r *Refresher) expiresIn(t time.Time) int64 {
	return int64(t.Sub(r.now()).Round(time.Second) / time.Second)
}

// call spends the refresh token at GHL while holding the lock. settled
// says whether the outcome is known and stored, so that the location is no
// longer in flight.
func (r *Refresher) call(ctx context.Context, lk *lock, c *store.Credential) (res Result, settled bool, err error) {
	loc := c.LocationID
	res = Result{LocationID: loc}
	toks, err := r.Store.Tokens(c)
	if err != nil {
		return res, false, r.unreadable(ctx, lk, c, err)
	}
	if err := r.Redis.ZAdd(ctx, keyInFlight, redis.Z{Score: float64(r.now().UnixMilli()), Member: loc}).Err(); err != nil {
		return res, false, fmt.Errorf("refresh %s: mark in flight: %w", loc, err)
	}
	if lk.lost() {
		// Another worker may hold the lock now: spending the token here
		// could race with it.
		return res, false, fmt.Errorf("refresh %s: lost the lock before calling GHL", loc)
	}
	// The call is not cancelled with the task: abandoning it half way
	// could spend the token without receiving its successor.
	callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), orDefault(r.CallTimeout, 20*time.Second))
	tok, _, err := r.GHL.Refresh(callCtx, toks.RefreshToken, c.UserType)
	cancel()
	answeredAt := r.now()
	switch {
	case err == nil:
	case errors.Is(err, ghl.ErrInvalidGrant):
		res.Outcome, res.Message = NeedsReauth, reauthMessage(loc)
		r.log().Error("GHL refused the refresh token; the location must be connected again",
			"location", loc, "reconnect", store.ConnectPath)
		return res, r.setStatus(ctx, lk, loc, store.StatusNeedsReauth, res.Message), res.err()
	case errors.Is(err, ghl.ErrLocationInactive):
		res.Outcome, res.Message = Inactive, ErrInactive.Error()
		r.log().Warn("GHL says the location is not active; will refresh again later", "location", loc)
		return res, r.setStatus(ctx, lk, loc, store.StatusInactive, "GHL: location is not active"), res.err()
	case ghl.Temporary(err):
		// GHL may have rotated the token without us hearing the answer:
		// the location stays in flight so that a retry with the same
		// refresh token comes within the grace window.
		return res, false, fmt.Errorf("refresh %s: %w", loc, err)
	default:
		// Only a refusal (a non-2xx answer) says GHL kept the token; an
		// answer we could not read may have carried a rotated one.
		return res, ghl.IsAPIError(err), fmt.Errorf("refresh %s: %w", loc, err)
	}

	next := store.Tokens{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, ExpiresAt: tok.Expiry}
	if err := r.save(ctx, lk, loc, next, answeredAt); err != nil {
		return res, false, err
	}
	res.Outcome, res.ExpiresAt, res.ExpiresIn = Refreshed, next.ExpiresAt.UTC(), r.expiresIn(next.ExpiresAt)
	r.log().Info(fmt.Sprintf("GHL token refreshed for location %s; new token expires in %d seconds", loc, tok.ExpiresIn),
		"location", loc, "expires_at", res.ExpiresAt)
	return res, true, nil
}

// save writes a refreshed token to the database. If the write fails, the
// token is first sealed into the pending slot, then the write is retried
// with backoff until it lands or SaveFor passes.
func (r *Refresher) save(ctx context.Context, lk *lock, loc string, t store.Tokens, refreshedAt time.Time) error {
	ctx = context.WithoutCancel(ctx)
	write := func(ctx context.Context) error { return r.Store.SaveRefreshed(ctx, loc, t, refreshedAt) }
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := write(wctx)
	cancel()
	if err == nil {
		return nil
	}
	r.log().Warn("GHL answered but the database refused the new token; keeping it in Redis and retrying", "location", loc, "err", err)
	if err := r.savePending(ctx, loc, pending{Tokens: t, RefreshedAt: refreshedAt}); err != nil {
		r.log().Error("could not keep the new token in Redis either; retrying the database", "location", loc, "err", err)
	}
	if err := r.retry(ctx, lk, orDefault(r.SaveFor, 10*time.Minute), write, "the database still refuses the new token; retrying", loc); err != nil {
		return fmt.Errorf("refresh %s: new token kept in Redis, not yet in the database: %w", loc, err)
	}
	r.log().Info("the new token reached the database", "location", loc)
	return nil
}

// setStatus records a final GHL answer as the location's status, and
// reports whether it landed.
func (r *Refresher) setStatus(ctx context.Context, lk *lock, loc string, st store.Status, msg string) bool {
	write := func(ctx context.Context) error { return r.Store.SetStatus(ctx, loc, st, msg) }
	if err := r.retry(context.WithoutCancel(ctx), lk, time.Minute, write, "could not record the location's status; retrying", loc); err != nil {
		r.log().Error("could not record the location's status", "location", loc, "status", st, "err", err)
		return false
	}
	return true
}

// retry runs write until it succeeds, the lock is lost or limit passes.
// The task's own cancellation does not stop it: what GHL answered must land.
func (r *Refresher) retry(ctx context.Context, lk *lock, limit time.Duration, write func(context.Context) error, msg, loc string) error {
	attempt := 0
	return store.Persist(ctx, r.Clock, limit, func(err error) bool {
		if attempt++; attempt%10 == 0 {
			r.log().Warn(msg, "location", loc, "attempt", attempt, "err", err)
		}
		return errors.Is(err, store.ErrNotFound) || lk.lost()
	}, write)
}

type pending struct {
	Tokens      store.Tokens
	RefreshedAt time.Time
}

type sealedPending struct {
	Access      string    `json:"access"`
	Refresh     string    `json:"refresh"`
	ExpiresAt   time.Time `json:"expires_at"`
	RefreshedAt time.Time `json:"refreshed_at"`
}

func (r *Refresher) savePending(ctx context.Context, loc string, p pending) error {
	a, err := r.Cipher.Seal(p.Tokens.AccessToken, loc+"/pending-access")
	if err != nil {
		return err
	}
	rt, err := r.Cipher.Seal(p.Tokens.RefreshToken, loc+"/pending-refresh")
	if err != nil {
		return err
	}
	b, _ := json.Marshal(sealedPending{Access: a, Refresh: rt, ExpiresAt: p.Tokens.ExpiresAt, RefreshedAt: p.RefreshedAt})
	return r.Redis.Set(context.WithoutCancel(ctx), keyPending+loc, b, pendingTTL).Err()
}

// writePending writes tokens that a dead worker received but could not store.
func (r *Refresher) writePending(ctx context.Context, lk *lock, loc string) error {
	b, err := r.Redis.Get(ctx, keyPending+loc).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("refresh %s: read pending token: %w", loc, err)
	}
	var sp sealedPending
	if err := json.Unmarshal(b, &sp); err != nil {
		return fmt.Errorf("refresh %s: pending token: %w", loc, err)
	}
	var p pending
	p.Tokens.ExpiresAt, p.RefreshedAt = sp.ExpiresAt, sp.RefreshedAt
	if p.Tokens.AccessToken, err = r.Cipher.Open(sp.Access, loc+"/pending-access"); err != nil {
		return fmt.Errorf("refresh %s: pending token: %w", loc, err)
	}
	if p.Tokens.RefreshToken, err = r.Cipher.Open(sp.Refresh, loc+"/pending-refresh"); err != nil {
		return fmt.Errorf("refresh %s: pending token: %w", loc, err)
	}
	r.log().Warn("storing a token that an earlier refresh received but did not store", "location", loc)
	if err := r.save(ctx, lk, loc, p.Tokens, p.RefreshedAt); err != nil {
		return err
	}
	lk.dropPending = true
	return nil
}

// Recover takes up refreshes whose worker died: every interval it looks at
// the in-flight set, and for each location whose lock has expired it stores
// a pending token or, inside the grace window, retries the refresh with the
// same refresh token. It returns when ctx is done.
func (r *Refresher) Recover(ctx context.Context, interval time.Duration) {
	t := clock.Or(r.Clock).NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		r.RecoverOnce(ctx)
	}
}

// RecoverOnce is one pass of Recover.
func (r *Refresher) RecoverOnce(ctx context.Context) {
	zs, err := r.Redis.ZRangeWithScores(ctx, keyInFlight, 0, -1).Result()
	if err != nil {
		if ctx.Err() == nil {
			r.log().Warn("reading in-flight refreshes", "err", err)
		}
		return
	}
	for _, z := range zs {
		loc, _ := z.Member.(string)
		since := time.UnixMilli(int64(z.Score))
		if n, err := r.Redis.Exists(ctx, keyLock+loc).Result(); err != nil || n > 0 {
			continue // its holder is alive (or Redis is failing)
		}
		hasPending, _ := r.Redis.Exists(ctx, keyPending+loc).Result()
		if hasPending == 0 && r.now().Sub(since) > r.grace() {
			// Too late to be served by the grace window; a retry would
			// only spend the token's last chance. The next scheduled
			// refresh says whether the location needs reconnecting. The
			// mark goes only if no refresh took the lock and marked it
			// anew meanwhile.
			if err := dropStaleScript.Run(ctx, r.Redis, []string{keyLock + loc, keyInFlight}, loc, int64(z.Score)).Err(); err != nil {
				continue
			}
			r.log().Warn("a refresh was interrupted outside GHL's grace window; leaving it to the next scheduled refresh",
				"location", loc, "since", since)
			continue
		}
		r.log().Info("taking up an interrupted refresh", "location", loc, "since", since)
		res, err := r.Refresh(ctx, Request{LocationID: loc, RequestedAt: since, Force: true, NoWait: true})
		if err != nil && !errors.Is(err, ErrBusy) {
			r.log().Warn("interrupted refresh taken up, still failing", "location", loc, "outcome", res.Outcome, "err", err)
		}
	}
}

// lock is a held refresh lock of one location: a lease, renewed until
// released.
type lock struct {
	r     *Refresher
	loc   string
	lease *lease.Lease
	// dropPending: the pending slot was written to the database.
	dropPending bool
}

// dropStaleScript removes an in-flight mark only while the lock is free
// and the mark is the one that was read.
var dropStaleScript = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 0 and tonumber(redis.call("ZSCORE", KEYS[2], ARGV[1])) == tonumber(ARGV[2]) then
  return redis.call("ZREM", KEYS[2], ARGV[1])
end
return 0`)

func (r *Refresher) leaseOptions(loc string) lease.Options {
	return lease.Options{TTL: r.lockTTL(), Clock: r.Clock, OnLost: func(err error) {
		r.log().Error("refresh lock lost", "location", loc, "err", err)
	}}
}

// tryLock takes the location's lock if it is free; lk is nil when another
// holds it. hasPending says whether a pending token waited when the lock
// was taken (read in the same transaction).
func (r *Refresher) tryLock(ctx context.Context, loc string) (lk *lock, hasPending bool, err error) {
	var pending *redis.IntCmd
	l, err := lease.TryAcquire(ctx, r.Redis, keyLock+loc, r.leaseOptions(loc), func(p redis.Pipeliner) {
		pending = p.Exists(ctx, keyPending+loc)
	})
	if err != nil {
		return nil, false, fmt.Errorf("refresh %s: %w", loc, err)
	}
	if l == nil {
		return nil, false, nil
	}
	return &lock{r: r, loc: loc, lease: l}, pending.Val() == 1, nil
}

// lock waits for the location's lock until ctx is done.
func (r *Refresher) lock(ctx context.Context, loc string) (*lock, bool, error) {
	var pending *redis.IntCmd
	l, err := lease.Acquire(ctx, r.Redis, keyLock+loc, r.leaseOptions(loc), 0, func(p redis.Pipeliner) {
		pending = p.Exists(ctx, keyPending+loc)
	})
	if err != nil {
		return nil, false, fmt.Errorf("refresh %s: %w", loc, err)
	}
	return &lock{r: r, loc: loc, lease: l}, pending.Val() == 1, nil
}

func (l *lock) lost() bool { return l.lease.Lost() }

// release drops the lock; settled also ends the location's in-flight mark
// and its pending slot (the database holds what GHL answered), in the
// same transaction.
func (l *lock) release(settled bool) {
	ctx := context.Background()
	err := l.lease.Release(ctx, func(p redis.Pipeliner) {
		if settled {
			p.ZRem(ctx, keyInFlight, l.loc)
		}
		if settled || l.dropPending {
			p.Del(ctx, keyPending+l.loc)
		}
	})
	if err != nil {
		l.r.log().Warn("releasing the refresh lock", "location", l.loc, "err", err)
	}
}
