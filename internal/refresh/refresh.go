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
//  3. Once GHL has answered, the new tokens are sealed into Redis (the
//     pending slot) and then written to the database, retried until the
//     write lands. A worker that dies while the database is down leaves the
//     pending tokens for the next holder of the lock to write.
package refresh

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/ghl"
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
	ErrNeedsReauth = errors.New("the location must be connected again at /api/auth/connect")
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
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

const (
	keyLock     = "ghlsync:refresh:lock:"
	keyPending  = "ghlsync:refresh:pending:"
	keyInFlight = "ghlsync:refresh:inflight"
	// pendingTTL keeps an unwritten token far longer than any database
	// outage; the refresh token it holds lives a year.
	pendingTTL = 30 * 24 * time.Hour
)

func (r *Refresher) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
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
	return res, err
}

func (r *Refresher) refresh(ctx context.Context, req Request) (Result, error) {
	loc := req.LocationID
	if req.RequestedAt.IsZero() {
		req.RequestedAt = r.now()
	}
	// Most requests of a burst end here, without touching the lock.
	c, err := r.credential(ctx, loc)
	if err != nil {
		return Result{LocationID: loc}, err
	}
	if res, done := r.satisfied(c, req); done {
		return res, res.err()
	}

	lk, err := r.lock(ctx, loc, req.NoWait)
	if err != nil {
		return Result{LocationID: loc}, err
	}
	defer lk.release()

	if err := r.writePending(ctx, lk, loc); err != nil {
		return Result{LocationID: loc}, err
	}
	if c, err = r.credential(ctx, loc); err != nil {
		return Result{LocationID: loc}, err
	}
	if res, done := r.satisfied(c, req); done {
		return res, res.err()
	}
	return r.call(ctx, lk, c)
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
	return "GHL refused the refresh token of location " + loc + " for good; connect it again at /api/auth/connect"
}

func (r *Refresher) expiresIn(t time.Time) int64 {
	return int64(t.Sub(r.now()).Round(time.Second) / time.Second)
}

// call spends the refresh token at GHL while holding the lock.
func (r *Refresher) call(ctx context.Context, lk *lock, c *store.Credential) (Result, error) {
	loc := c.LocationID
	res := Result{LocationID: loc}
	toks, err := r.Store.Tokens(c)
	if err != nil {
		return res, fmt.Errorf("refresh %s: %w", loc, err)
	}
	if err := r.Redis.ZAdd(ctx, keyInFlight, redis.Z{Score: float64(r.now().UnixMilli()), Member: loc}).Err(); err != nil {
		return res, fmt.Errorf("refresh %s: mark in flight: %w", loc, err)
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
		r.Log.Error("GHL refused the refresh token; the location must be connected again",
			"location", loc, "reconnect", "/api/auth/connect")
		r.settle(ctx, lk, loc, func(ctx context.Context) error {
			return r.Store.SetStatus(ctx, loc, store.StatusNeedsReauth, res.Message)
		})
		return res, res.err()
	case errors.Is(err, ghl.ErrLocationInactive):
		res.Outcome, res.Message = Inactive, ErrInactive.Error()
		r.Log.Warn("GHL says the location is not active; will refresh again later", "location", loc)
		r.settle(ctx, lk, loc, func(ctx context.Context) error {
			return r.Store.SetStatus(ctx, loc, store.StatusInactive, "GHL: location is not active")
		})
		return res, res.err()
	case ghl.Temporary(err):
		// GHL may have rotated the token without us hearing the answer:
		// the location stays in flight so that a retry with the same
		// refresh token comes within the grace window.
		return res, fmt.Errorf("refresh %s: %w", loc, err)
	default:
		r.Redis.ZRem(context.WithoutCancel(ctx), keyInFlight, loc)
		return res, fmt.Errorf("refresh %s: %w", loc, err)
	}

	next := store.Tokens{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, ExpiresAt: tok.Expiry}
	if err := r.savePending(ctx, loc, pending{Tokens: next, RefreshedAt: answeredAt}); err != nil {
		// Redis is failing too: the database write below is the only copy.
		r.Log.Warn("could not stash the new token in Redis; writing it to the database only", "location", loc, "err", err)
	}
	if err := r.save(ctx, lk, loc, next, answeredAt); err != nil {
		return res, err
	}
	res.Outcome, res.ExpiresAt, res.ExpiresIn = Refreshed, next.ExpiresAt.UTC(), r.expiresIn(next.ExpiresAt)
	r.Log.Info(fmt.Sprintf("GHL token refreshed for location %s; new token expires in %d seconds", loc, tok.ExpiresIn),
		"location", loc, "expires_at", res.ExpiresAt)
	return res, nil
}

// save writes a refreshed token to the database, retrying with backoff
// until it lands or SaveFor passes; then the in-flight mark and the pending
// slot are cleared.
func (r *Refresher) save(ctx context.Context, lk *lock, loc string, t store.Tokens, refreshedAt time.Time) error {
	ctx = context.WithoutCancel(ctx)
	err := r.retry(ctx, lk, orDefault(r.SaveFor, 10*time.Minute), func(ctx context.Context) error {
		return r.Store.SaveRefreshed(ctx, loc, t, refreshedAt)
	}, "GHL answered but the database refused the new token; retrying", loc)
	if err != nil {
		return fmt.Errorf("refresh %s: new token kept in Redis, not yet in the database: %w", loc, err)
	}
	r.Redis.Del(ctx, keyPending+loc)
	r.Redis.ZRem(ctx, keyInFlight, loc)
	return nil
}

// settle records a final GHL answer (a status change) and clears the
// in-flight mark.
func (r *Refresher) settle(ctx context.Context, lk *lock, loc string, write func(context.Context) error) {
	ctx = context.WithoutCancel(ctx)
	if err := r.retry(ctx, lk, time.Minute, write, "could not record the location's status; retrying", loc); err != nil {
		r.Log.Error("could not record the location's status", "location", loc, "err", err)
	}
	r.Redis.ZRem(ctx, keyInFlight, loc)
}

// retry runs write until it succeeds, the lock is lost or limit passes.
// The task's own cancellation does not stop it: what GHL answered must land.
func (r *Refresher) retry(ctx context.Context, lk *lock, limit time.Duration, write func(context.Context) error, msg, loc string) error {
	deadline := time.Now().Add(limit)
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := write(wctx)
		cancel()
		if err == nil || errors.Is(err, store.ErrNotFound) {
			return err
		}
		if lk.lost() {
			return fmt.Errorf("lock lost: %w", err)
		}
		if time.Now().After(deadline) {
			return err
		}
		if attempt == 1 || attempt%10 == 0 {
			r.Log.Warn(msg, "location", loc, "attempt", attempt, "err", err)
		}
		time.Sleep(backoff/2 + rand.N(backoff/2+1))
		backoff = min(backoff*2, 5*time.Second)
	}
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
	r.Log.Warn("storing a token that an earlier refresh received but did not store", "location", loc)
	return r.save(ctx, lk, loc, p.Tokens, p.RefreshedAt)
}

// Recover takes up refreshes whose worker died: every interval it looks at
// the in-flight set, and for each location whose lock has expired it stores
// a pending token or, inside the grace window, retries the refresh with the
// same refresh token. It returns when ctx is done.
func (r *Refresher) Recover(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.RecoverOnce(ctx)
	}
}

// RecoverOnce is one pass of Recover.
func (r *Refresher) RecoverOnce(ctx context.Context) {
	zs, err := r.Redis.ZRangeWithScores(ctx, keyInFlight, 0, -1).Result()
	if err != nil {
		if ctx.Err() == nil {
			r.Log.Warn("reading in-flight refreshes", "err", err)
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
			// refresh says whether the location needs reconnecting.
			r.Redis.ZRem(ctx, keyInFlight, loc)
			r.Log.Warn("a refresh was interrupted outside GHL's grace window; leaving it to the next scheduled refresh",
				"location", loc, "since", since)
			continue
		}
		r.Log.Info("taking up an interrupted refresh", "location", loc, "since", since)
		res, err := r.Refresh(ctx, Request{LocationID: loc, RequestedAt: since, Force: true, NoWait: true})
		if err != nil && !errors.Is(err, ErrBusy) {
			r.Log.Warn("interrupted refresh taken up, still failing", "location", loc, "outcome", res.Outcome, "err", err)
		}
	}
}

// lock is a held Redis lock of one location, renewed until released.
type lock struct {
	r        *Refresher
	key      string
	owner    string
	isLost   atomic.Bool
	released chan struct{}
}

var (
	releaseScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)
	renewScript   = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`)
)

// lock acquires the location's lock, waiting (with jittered polling) unless
// noWait is set.
func (r *Refresher) lock(ctx context.Context, loc string, noWait bool) (*lock, error) {
	b := make([]byte, 12)
	crand.Read(b)
	l := &lock{r: r, key: keyLock + loc, owner: hex.EncodeToString(b), released: make(chan struct{})}
	ttl := r.lockTTL()
	wait := 10 * time.Millisecond
	for {
		ok, err := r.Redis.SetNX(ctx, l.key, l.owner, ttl).Result()
		if err != nil {
			return nil, fmt.Errorf("refresh %s: lock: %w", loc, err)
		}
		if ok {
			break
		}
		if noWait {
			return nil, fmt.Errorf("refresh %s: %w", loc, ErrBusy)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("refresh %s: waiting for lock: %w", loc, ctx.Err())
		case <-time.After(wait/2 + rand.N(wait/2+1)):
		}
		wait = min(wait*2, 200*time.Millisecond)
	}
	go l.renew(ttl)
	return l, nil
}

func (l *lock) renew(ttl time.Duration) {
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	ms := strconv.FormatInt(ttl.Milliseconds(), 10)
	for {
		select {
		case <-l.released:
			return
		case <-t.C:
		}
		n, err := renewScript.Run(context.Background(), l.r.Redis, []string{l.key}, l.owner, ms).Int()
		if err == nil && n == 0 {
			// Someone else holds it now: stop acting as the holder.
			l.r.Log.Error("refresh lock lost", "key", l.key)
			l.isLost.Store(true)
			return
		}
	}
}

func (l *lock) lost() bool { return l.isLost.Load() }

func (l *lock) release() {
	close(l.released)
	releaseScript.Run(context.Background(), l.r.Redis, []string{l.key}, l.owner)
}
