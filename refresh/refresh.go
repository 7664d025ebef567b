// Package refresh refreshes the OAuth token of a GHL location so that a
// single-use refresh token is spent at most once across every worker, and the
// token GHL sends back is never lost.
//
// The protocol, per location:
//
//  1. A Redis lock (SET NX with a short TTL that the holder keeps renewing)
//     lets one refresh run at a time across all workers. A request counts as
//     done when a refresh completed after it was made, both times on
//     Redis's clock (SharedTime; a completion is the in-flight mark's
//     Redis time plus the time measured since, see answeredAt), so a burst
//     of requests costs one GHL call however wrong the clocks of the
//     processes that asked are.
//  2. Before calling GHL the holder adds the location to an in-flight set.
//     If the holder dies during the call, any worker's Recover loop retries
//     with the same refresh token, inside GHL's 30 s grace window, so a token
//     that GHL rotated but whose answer was lost is received again. A lock
//     names its holder's worker, and a worker keeps a heartbeat key alive
//     (Heartbeat): Recover takes over the lock of a worker whose heartbeat
//     has gone at once, rather than wait for the lock to expire, and a
//     starting worker does so before anything else.
//  3. Once GHL has answered, the new tokens are written to the database,
//     retried until the write lands. If the first write fails they are also
//     sealed into Redis (the pending slot), so that a worker that dies while
//     the database is down leaves them for the next holder of the lock. (A
//     worker that dies before its first write is covered by step 2.)
//  4. Every write of what GHL answered is a compare-and-set on the token
//     version that was spent (store.SaveRefreshed): a holder that lost its
//     lock while GHL was slow (Redis emptied, the process frozen) and hears
//     back after others refreshed again brings an older rotation, which is
//     discarded, never stored over the newer one.
package refresh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/internal/lease"
	"github.com/ghlsync/ghlsync/internal/redisconn"
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
	// Reminted: GHL refused the location's refresh token, and a new
	// token was minted from its agency's token (see Refresher.Agency).
	Reminted Outcome = "reminted"
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
	// RequestedAt is when the refresh was asked for, on the shared clock
	// (SharedTime): a refresh completed at or after it satisfies the
	// request. Zero is now.
	RequestedAt time.Time
	// NewerThan, when positive, is the token version (store.Credential's
	// TokenVersion) the asker holds: any stored token of a later version
	// satisfies the request, whatever the times, so no clock is involved.
	NewerThan int64
	// Force refreshes even when the token does not expire within Window.
	Force bool
	// NoWait fails with ErrBusy instead of waiting for another refresh.
	NoWait bool
	// Due says the asker has just read that the token is due (the
	// refresh-due fan-out's children): the read that answers most other
	// requests without the lock would rarely answer this one, so it is
	// skipped and the request goes straight to the lock, under which the
	// credential is read and decides as for any request.
	Due bool
}

// Result is the JSON result of a refresh. It never carries a token.
type Result struct {
	LocationID string    `json:"location_id"`
	Outcome    Outcome   `json:"outcome"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"`
	ExpiresIn  int64     `json:"expires_in_seconds,omitempty"`
	Message    string    `json:"message,omitempty"`
	// logged: the refresh's history entry was stored with its token.
	logged bool
}

// Credentials is what the refresher needs of the store.
type Credentials interface {
	Credential(ctx context.Context, loc string) (*store.Credential, error)
	// RefreshStates reads the status, token version, expiry and last
	// refresh of the credentials of locs, and nothing else (no tokens);
	// a location without one is missing from the map.
	RefreshStates(ctx context.Context, locs []string) (map[string]*store.Credential, error)
	// CredentialsOf reads the credentials of locs whole; a location
	// without one is missing from the map.
	CredentialsOf(ctx context.Context, locs []string) (map[string]*store.Credential, error)
	Tokens(c *store.Credential) (store.Tokens, error)
	// SaveRefreshed and SetRefreshStatus are compare-and-sets on the
	// token version spent, failing with store.ErrStale when the row holds
	// a newer token.
	SaveRefreshed(ctx context.Context, loc string, spent int64, t store.Tokens, refreshedAt time.Time) error
	SetRefreshStatus(ctx context.Context, loc string, spent int64, st store.Status, lastError string) error
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
	// HeartbeatTTL is how long a worker's heartbeat (see Heartbeat)
	// outlives its last renewal, renewed every HeartbeatTTL/3: a worker
	// silent for longer counts as dead and its in-flight refreshes are
	// taken over. Default 3s.
	HeartbeatTTL time.Duration
	// CallSlots, when above zero, is how many token calls to GHL the
	// Refresher makes at once (a worker's token concurrency). A refresh
	// takes a slot once it has marked its location in flight and frees it
	// as soon as GHL has answered, so that the reads and writes before
	// and after a call, and the queue's work between tasks, overlap other
	// refreshes' calls instead of leaving GHL's side idle. Run more
	// refreshes at once than CallSlots for that (a worker runs twice as
	// many).
	CallSlots int
	// Agency, when set, mints a location's token from its agency's
	// (Company) token when GHL refuses the location's refresh token, so
	// that a location of an agency ghlsync holds is not marked
	// needs_reauth for a refresh token that was lost. *ghl.OAuthService is
	// one.
	Agency AgencyMinter
	// Observe, when set, is told every outcome (for metrics).
	Observe func(Outcome)
	// ObserveFailure, when set, is told the reason (FailureReason) of
	// every refresh that failed (for metrics).
	ObserveFailure func(reason string)
	// History, when set, logs every refresh that called GHL or failed,
	// for the web's location page; a request that another refresh had
	// answered (Fresh) is not logged.
	History History
	Clock   clock.Clock

	hb heartbeat
	// reads batches the narrow reads before the lock, creds the whole
	// reads under it.
	reads, creds stateReads

	calls struct {
		once  sync.Once
		slots chan struct{}
	}
}

// callSlot waits for one of CallSlots (at once when CallSlots is zero);
// free gives it back, and does nothing after the first time.
func (r *Refresher) callSlot(ctx context.Context) (free func(), err error) {
	if r.CallSlots <= 0 {
		return func() {}, nil
	}
	r.calls.once.Do(func() { r.calls.slots = make(chan struct{}, r.CallSlots) })
	select {
	case r.calls.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var once sync.Once
	return func() { once.Do(func() { <-r.calls.slots }) }, nil
}

// markSlack is how much earlier than its call an in-flight mark may be
// set (see call): a small part of GHL's 30 s grace.
const markSlack = time.Second

const (
	keyLock     = "ghlsync:refresh:lock:"
	keyPending  = "ghlsync:refresh:pending:"
	keyInFlight = "ghlsync:refresh:inflight"
	keyWorker   = "ghlsync:refresh:worker:"
	// pendingTTL keeps an unwritten token far longer than any database
	// outage; the refresh token it holds lives a year.
	pendingTTL = 30 * 24 * time.Hour
)

// LockKey is the Redis key of loc's refresh lock. Whoever writes a
// location's tokens outside a refresh (a connection the web callback kept
// while the database was down) holds it meanwhile, so that no refresh of
// the earlier tokens runs and writes over them.
func LockKey(loc string) string { return keyLock + loc }

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

func (r *Refresher) lockTTL() time.Duration      { return orDefault(r.LockTTL, 10*time.Second) }
func (r *Refresher) grace() time.Duration        { return orDefault(r.Grace, 30*time.Second) }
func (r *Refresher) heartbeatTTL() time.Duration { return orDefault(r.HeartbeatTTL, 3*time.Second) }

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
	r.record(ctx, req.LocationID, res, err)
	return res, err
}

func (r *Refresher) refresh(ctx context.Context, req Request) (Result, error) {
	loc := req.LocationID
	if req.RequestedAt.IsZero() {
		now, err := SharedTime(ctx, r.Redis)
		if err != nil {
			return Result{LocationID: loc}, fmt.Errorf("refresh %s: %w", loc, err)
		}
		req.RequestedAt = now
	}
	if !req.NoWait && !req.Due {
		// Most requests end here, with one narrow read and no lock: the
		// token is not due, or a refresh completed since the request was
		// made (a burst, or a schedule behind a refresh on demand). What
		// the database holds answers them whoever holds the lock, as it
		// does below when another holds it. A request that is not
		// answered is decided again under the lock, so a refresh token is
		// still spent once. Recover's requests (NoWait) always take the
		// lock: they also clear in-flight marks and pending slots.
		st, err := r.state(ctx, loc)
		if err != nil {
			return Result{LocationID: loc}, err
		}
		if res, done := r.satisfied(st, req); done {
			return res, res.err()
		}
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
		clearInFlight = r.settledSince(ctx, lk, c)
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
// The mark read is lk's to clear. A mark that taking lk set is not
// another's (none was there): release clears it, GHL not having been asked.
func (r *Refresher) settledSince(ctx context.Context, lk *lock, c *store.Credential) bool {
	if lk.ownMark {
		return false
	}
	score := lk.mark
	if !lk.markRead {
		var err error
		if score, err = r.Redis.ZScore(ctx, keyInFlight, c.LocationID).Result(); err != nil {
			return false // no mark (redis.Nil), or leave it to Recover
		}
		lk.mark = score
	}
	return c.Status == store.StatusNeedsReauth || c.Status == store.StatusUninstalled ||
		(c.RefreshedAt != nil && !c.RefreshedAt.Before(time.UnixMilli(int64(score))))
}

// credential reads loc's credential whole, in one query with the other
// refreshes waiting for theirs (see stateReads).
func (r *Refresher) credential(ctx context.Context, loc string) (*store.Credential, error) {
	return r.read(ctx, loc, func(ctx context.Context, loc string) (*store.Credential, error) {
		return r.creds.read(ctx, r.Store.CredentialsOf, loc)
	})
}

// state reads what satisfied needs of loc's credential, without tokens,
// in one query with the other requests waiting for theirs (see
// stateReads).
func (r *Refresher) state(ctx context.Context, loc string) (*store.Credential, error) {
	return r.read(ctx, loc, func(ctx context.Context, loc string) (*store.Credential, error) {
		return r.reads.read(ctx, r.Store.RefreshStates, loc)
	})
}

func (r *Refresher) read(ctx context.Context, loc string, read func(context.Context, string) (*store.Credential, error)) (*store.Credential, error) {
	c, err := read(ctx, loc)
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
	case c.Status == store.StatusActive && req.NewerThan > 0 && c.TokenVersion > req.NewerThan:
		res.Outcome = Fresh
		return res, true
	case c.Status == store.StatusActive && req.NewerThan <= 0 && c.RefreshedAt != nil && !c.RefreshedAt.Before(req.RequestedAt):
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
	// The location is marked in flight before the wait for a call slot,
	// when the lock is taken (on a Redis Cluster, and over a mark an
	// earlier refresh left, here), so that the mark costs no round trip of
	// its own and none inside a slot. The mark tells Recover when GHL may
	// have been asked (GHL's grace for a lost answer runs from the call):
	// a mark older than markSlack when the slot comes is set again, so
	// that it is never more than that early, nor Recover's grace window
	// shorter than GHL's by more.
	marked := lk.marked
	mark := func() error {
		score, m, err := r.markInFlight(ctx, loc)
		if err != nil {
			return fmt.Errorf("refresh %s: mark in flight: %w", loc, err)
		}
		lk.mark, marked = score, m
		return nil
	}
	if !lk.ownMark {
		if err := mark(); err != nil {
			return res, false, err
		}
	}
	free, err := r.callSlot(ctx)
	if err != nil {
		// GHL was not asked: release clears a mark the lock set; an
		// earlier refresh's stays for Recover, as when the lock is lost
		// below.
		return res, false, fmt.Errorf("refresh %s: waiting to call GHL: %w", loc, err)
	}
	defer free()
	if time.Since(marked.local) > markSlack {
		if err := mark(); err != nil {
			return res, false, err
		}
	}
	if !lk.mayCall() {
		// Another worker may hold the lock now, or be taking it over:
		// spending the token here could race with it.
		return res, false, fmt.Errorf("refresh %s: lost the lock before calling GHL", loc)
	}
	lk.called = true
	spent := c.TokenVersion
	var tok *ghl.Token
	if toks.RefreshToken == "" {
		// A token minted from the agency's may come without a refresh
		// token: only the agency can renew it.
		err = fmt.Errorf("refresh %s: the stored token has no refresh token: %w", loc, ghl.ErrInvalidGrant)
	} else {
		// The call is not cancelled with the task: abandoning it half way
		// could spend the token without receiving its successor.
		callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), orDefault(r.CallTimeout, 20*time.Second))
		tok, _, err = r.GHL.Refresh(callCtx, toks.RefreshToken, c.UserType)
		cancel()
		free()
	}
	answeredAt := answeredAt(marked)
	switch {
	case err == nil:
	case errors.Is(err, ghl.ErrInvalidGrant):
		if res, settled, tried, err := r.remint(ctx, lk, c, spent, marked); tried {
			return res, settled, err
		}
		res.Outcome, res.Message = NeedsReauth, reauthMessage(loc)
		landed, stale := r.setStatus(ctx, lk, loc, spent, store.StatusNeedsReauth, res.Message)
		if stale {
			return r.discarded(ctx, loc, spent, "GHL refused a refresh token that a newer stored token had already replaced; the newer one stands")
		}
		r.log().Error("GHL refused the refresh token; the location must be connected again",
			"location", loc, "reconnect", store.ConnectPath)
		return res, landed, res.err()
	case errors.Is(err, ghl.ErrLocationInactive):
		res.Outcome, res.Message = Inactive, ErrInactive.Error()
		landed, stale := r.setStatus(ctx, lk, loc, spent, store.StatusInactive, "GHL: location is not active")
		if stale {
			return r.discarded(ctx, loc, spent, "GHL answered an older refresh token with 'location not active'; a refresh of the newer stored token will tell")
		}
		r.log().Warn("GHL says the location is not active; will refresh again later", "location", loc)
		return res, landed, res.err()
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
	var run *store.RefreshRun
	if r.History != nil {
		exp := next.ExpiresAt.UTC()
		run = &store.RefreshRun{LocationID: loc, At: r.now(), Outcome: string(Refreshed), ExpiresAt: &exp}
	}
	logged, err := r.save(ctx, lk, loc, spent, next, answeredAt, run)
	if errors.Is(err, store.ErrStale) {
		return r.discarded(ctx, loc, spent, "GHL answered after a newer token was stored (this worker lost its lock while waiting, or its own write landed unseen); not storing the answer")
	} else if err != nil {
		return res, false, err
	}
	res.Outcome, res.ExpiresAt, res.ExpiresIn = Refreshed, next.ExpiresAt.UTC(), r.expiresIn(next.ExpiresAt)
	res.logged = logged
	r.log().Info(fmt.Sprintf("GHL token refreshed for location %s; new token expires in %d seconds", loc, tok.ExpiresIn),
		"location", loc, "expires_at", res.ExpiresAt)
	return res, true, nil
}

// answeredAt is when GHL answered (now), on the shared clock, without
// asking Redis again: the in-flight mark's time on the shared clock plus
// the time this process measured (monotonic) since the mark's answer
// arrived. Redis read its time before sending that answer, so the sum is at
// most the shared clock's time now (bar the clocks' rates differing, which
// NTP keeps within a fraction of a millisecond over a call): early by up
// to one network hop, never late. Early is the safe side. A refresh
// counts as answering the requests made at or before it completed
// (satisfied): stamped early, it answers fewer, and a request made in that
// last hop costs one more refresh at worst; stamped late, it would answer
// a request made after GHL had answered, one that may want a token newer
// than the one stored.
func answeredAt(m markTime) time.Time {
	return m.shared.Add(time.Since(m.local)).UTC()
}

// discarded ends a refresh whose answer lost the compare-and-set: the
// database holds a newer token than the one it spent, and that one
// answers the request. The in-flight mark and the pending slot stay as
// they are, for whoever refreshed since.
func (r *Refresher) discarded(ctx context.Context, loc string, spent int64, msg string) (Result, bool, error) {
	r.log().Warn(msg, "location", loc, "spent_version", spent)
	c, err := r.credential(ctx, loc)
	if err != nil {
		return Result{LocationID: loc}, false, err
	}
	res := Result{LocationID: loc, Outcome: Fresh, ExpiresAt: c.ExpiresAt.UTC(), ExpiresIn: r.expiresIn(c.ExpiresAt)}
	switch c.Status {
	case store.StatusNeedsReauth:
		res.Outcome, res.Message = NeedsReauth, reauthMessage(loc)
	case store.StatusUninstalled:
		res.Outcome, res.Message = NeedsReauth, "location "+loc+": "+store.StatusUninstalled.Problem()
	}
	return res, false, res.err()
}

// loggedSaver is a Credentials that stores a refreshed token and its
// refresh history entry in one commit (*store.Store is one): a refresher
// with a History whose Store is one writes both with it, one wait for the
// database's log flush instead of two. Its history must be History's.
type loggedSaver interface {
	SaveRefreshedLogged(ctx context.Context, loc string, spent int64, t store.Tokens, refreshedAt time.Time, run *store.RefreshRun) error
}

// save writes a refreshed token to the database, as a compare-and-set on
// the version spent. If the write fails, the token is first sealed into
// the pending slot, then the write is retried with backoff until it lands
// or SaveFor passes. An error wrapping store.ErrStale says the answer is
// an older rotation than the stored token and was not stored.
//
// run, when set, is the refresh's history entry: the first write stores
// it with the token when the store can (logged says it did). The retries
// store the token alone, so that nothing about the history can hold a
// new token back; the entry is then left to record.
func (r *Refresher) save(ctx context.Context, lk *lock, loc string, spent int64, t store.Tokens, refreshedAt time.Time, run *store.RefreshRun) (logged bool, err error) {
	ctx = context.WithoutCancel(ctx)
	write := func(ctx context.Context) error { return r.Store.SaveRefreshed(ctx, loc, spent, t, refreshedAt) }
	first := write
	ls, canLog := r.Store.(loggedSaver)
	if canLog && run != nil {
		first = func(ctx context.Context) error { return ls.SaveRefreshedLogged(ctx, loc, spent, t, refreshedAt, run) }
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = first(wctx)
	cancel()
	if err == nil {
		return canLog && run != nil, nil
	}
	if errors.Is(err, store.ErrStale) {
		return false, err
	}
	r.log().Warn("GHL answered but the database refused the new token; keeping it in Redis and retrying", "location", loc, "err", err)
	if err := r.savePending(ctx, lk, loc, pending{Tokens: t, RefreshedAt: refreshedAt, Spent: spent}); err != nil {
		r.log().Error("could not keep the new token in Redis either; retrying the database", "location", loc, "err", err)
	}
	err = r.retry(ctx, lk, orDefault(r.SaveFor, 10*time.Minute), write, "the database still refuses the new token; retrying", loc)
	if errors.Is(err, store.ErrStale) {
		return false, err
	}
	if err != nil {
		return false, fmt.Errorf("refresh %s: new token kept in Redis, not yet in the database: %w", loc, err)
	}
	r.log().Info("the new token reached the database", "location", loc)
	return false, nil
}

// setStatus records a final GHL answer about the token of version spent
// as the location's status. landed says it was recorded; stale that the
// database holds a newer token, which the answer says nothing about.
func (r *Refresher) setStatus(ctx context.Context, lk *lock, loc string, spent int64, st store.Status, msg string) (landed, stale bool) {
	write := func(ctx context.Context) error { return r.Store.SetRefreshStatus(ctx, loc, spent, st, msg) }
	err := r.retry(context.WithoutCancel(ctx), lk, time.Minute, write, "could not record the location's status; retrying", loc)
	if errors.Is(err, store.ErrStale) {
		return false, true
	}
	if err != nil {
		r.log().Error("could not record the location's status", "location", loc, "status", st, "err", err)
		return false, false
	}
	return true, false
}

// retry runs write until it succeeds, the lock is lost or limit passes.
// The task's own cancellation does not stop it: what GHL answered must land.
func (r *Refresher) retry(ctx context.Context, lk *lock, limit time.Duration, write func(context.Context) error, msg, loc string) error {
	attempt := 0
	return store.Persist(ctx, r.Clock, limit, func(err error) bool {
		if attempt++; attempt%10 == 0 {
			r.log().Warn(msg, "location", loc, "attempt", attempt, "err", err)
		}
		return errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrStale) || lk.lost()
	}, write)
}

type pending struct {
	Tokens      store.Tokens
	RefreshedAt time.Time
	// Spent is the token version the refresh spent: storing the pending
	// token is the same compare-and-set as storing it at once.
	Spent int64
}

type sealedPending struct {
	Access      string    `json:"access"`
	Refresh     string    `json:"refresh"`
	ExpiresAt   time.Time `json:"expires_at"`
	RefreshedAt time.Time `json:"refreshed_at"`
	// Spent is absent (0) in slots written before token versions, which
	// matches the version every row had then.
	Spent int64 `json:"spent_version"`
}

func (r *Refresher) savePending(ctx context.Context, lk *lock, loc string, p pending) error {
	a, rt, err := store.SealTokens(r.Cipher, loc, "pending-", p.Tokens)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(sealedPending{Access: a, Refresh: rt, ExpiresAt: p.Tokens.ExpiresAt, RefreshedAt: p.RefreshedAt, Spent: p.Spent})
	if err := r.Redis.Set(context.WithoutCancel(ctx), keyPending+loc, b, pendingTTL).Err(); err != nil {
		return err
	}
	lk.pending = string(b)
	return nil
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
	lk.pending = string(b)
	var sp sealedPending
	if err := json.Unmarshal(b, &sp); err != nil {
		return fmt.Errorf("refresh %s: pending token: %w", loc, err)
	}
	p := pending{RefreshedAt: sp.RefreshedAt, Spent: sp.Spent}
	if p.Tokens, err = store.OpenTokens(r.Cipher, loc, "pending-", sp.Access, sp.Refresh); err != nil {
		return fmt.Errorf("refresh %s: pending token: %w", loc, err)
	}
	p.Tokens.ExpiresAt = sp.ExpiresAt
	r.log().Warn("storing a token that an earlier refresh received but did not store", "location", loc)
	_, err = r.save(ctx, lk, loc, p.Spent, p.Tokens, p.RefreshedAt, nil)
	if errors.Is(err, store.ErrStale) {
		// The database moved past the token that refresh spent (its own
		// write landed after all, or a newer refresh did): the pending
		// token is the older rotation.
		r.log().Warn("discarding a pending token older than the stored one", "location", loc, "spent_version", p.Spent)
	} else if err != nil {
		return err
	}
	lk.dropPending = true
	return nil
}

// Recover takes up refreshes whose worker died: at once, then every
// interval, it looks at the in-flight set, and for each location whose
// lock has expired, or whose lock holder's heartbeat has gone, it stores a
// pending token or, inside the grace window, retries the refresh with the
// same refresh token. It returns when ctx is done. Run Heartbeat beside it,
// so that the locks this worker takes can be taken over if it dies.
func (r *Refresher) Recover(ctx context.Context, interval time.Duration) {
	t := clock.Or(r.Clock).NewTicker(interval)
	defer t.Stop()
	for {
		// The first pass runs at start: a worker started again after a
		// crash has only what is left of GHL's grace window to retry what
		// it left in flight.
		r.RecoverOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

// recoverParallel bounds the refreshes one Recover pass takes up at once:
// each must reach GHL inside the grace window, so they are not queued
// behind one another.
const recoverParallel = 20

// RecoverOnce is one pass of Recover.
func (r *Refresher) RecoverOnce(ctx context.Context) {
	zs, err := r.Redis.ZRangeWithScores(ctx, keyInFlight, 0, -1).Result()
	if err == nil && len(zs) > 0 {
		var now time.Time
		if now, err = SharedTime(ctx, r.Redis); err == nil {
			sem := make(chan struct{}, recoverParallel)
			var wg sync.WaitGroup
			for _, z := range zs {
				sem <- struct{}{}
				wg.Go(func() {
					defer func() { <-sem }()
					r.recoverOne(ctx, z, now)
				})
			}
			wg.Wait()
		}
	}
	if err != nil && ctx.Err() == nil {
		r.log().Warn("reading in-flight refreshes", "err", err)
	}
}

// recoverOne takes up one in-flight mark, read at now (shared clock).
func (r *Refresher) recoverOne(ctx context.Context, z redis.Z, now time.Time) {
	loc, _ := z.Member.(string)
	since := time.UnixMilli(int64(z.Score))
	if !r.lockFree(ctx, loc) {
		return // its holder is alive (or Redis is failing)
	}
	hasPending, _ := r.Redis.Exists(ctx, keyPending+loc).Result()
	if hasPending == 0 && now.Sub(since) > r.grace() {
		// Too late to be served by the grace window; a retry would
		// only spend the token's last chance. The next scheduled
		// refresh says whether the location needs reconnecting. The
		// mark goes only if no refresh took the lock and marked it
		// anew meanwhile.
		if err := r.dropStale(ctx, loc, z.Score); err != nil {
			return
		}
		r.log().Warn("a refresh was interrupted outside GHL's grace window; leaving it to the next scheduled refresh",
			"location", loc, "since", since)
		return
	}
	r.log().Info("taking up an interrupted refresh", "location", loc, "since", since)
	res, err := r.Refresh(ctx, Request{LocationID: loc, RequestedAt: since, Force: true, NoWait: true})
	if err != nil && !errors.Is(err, ErrBusy) {
		r.log().Warn("interrupted refresh taken up, still failing", "location", loc, "outcome", res.Outcome, "err", err)
	}
}

// lockFree reports whether loc's lock is free, freeing it first when its
// holder is a worker whose heartbeat has gone: that worker is dead (or
// has been silent too long to vouch for its lock, so it will not start a
// GHL call under it), and waiting for the lock to expire would spend the
// grace window.
func (r *Refresher) lockFree(ctx context.Context, loc string) bool {
	owner, err := r.Redis.Get(ctx, keyLock+loc).Result()
	if errors.Is(err, redis.Nil) {
		return true
	}
	worker, ok := ownerWorker(owner)
	if err != nil || !ok {
		return false // a holder without a heartbeat: only expiry frees it
	}
	if !r.takeOver(ctx, loc, worker, owner) {
		return false
	}
	r.log().Warn("the worker holding a refresh lock has no heartbeat; taking its refresh over", "location", loc, "worker", worker)
	return true
}

// takeOverScript deletes a lock only while it is still the owner's that
// was read and that owner's worker has no heartbeat.
var takeOverScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] and redis.call("EXISTS", KEYS[2]) == 0 then
  return redis.call("DEL", KEYS[1])
end
return 0`)

// lock is a held refresh lock of one location: a lease, renewed until
// released.
type lock struct {
	r     *Refresher
	loc   string
	lease *lease.Lease
	// beating: the lock names this worker, so it counts as held only
	// while the worker's heartbeat is confirmed.
	beating bool
	// dropPending: the pending slot was written to the database.
	dropPending bool
	// mark is the score of the in-flight mark this holder set or read,
	// and pending the pending slot's value it wrote or read: on a Redis
	// Cluster, where the lock cannot be checked in the same script, only
	// those are cleared (see settle).
	mark    float64
	pending string
	// ownMark: taking the lock marked the location in flight, when it
	// was taken (marked), no earlier mark being there; markRead: it found
	// an earlier one, of score mark.
	ownMark, markRead bool
	marked            markTime
	// called: GHL may have been asked under this lock.
	called bool
}

// dropStaleScript removes an in-flight mark only while the lock is free
// and the mark is the one that was read.
var dropStaleScript = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 0 and tonumber(redis.call("ZSCORE", KEYS[2], ARGV[1])) == tonumber(ARGV[2]) then
  return redis.call("ZREM", KEYS[2], ARGV[1])
end
return 0`)

func (r *Refresher) leaseOptions(loc string) (lease.Options, bool) {
	prefix, beating := r.hb.ownerPrefix()
	return lease.Options{TTL: r.lockTTL(), Clock: r.Clock, OwnerPrefix: prefix, OnLost: func(err error) {
		r.log().Error("refresh lock lost", "location", loc, "err", err)
	}}, beating
}

// tryLock takes the location's lock if it is free; lk is nil when another
// holds it. hasPending says whether a pending token waited when the lock
// was taken (read in the same transaction, which also marks the location
// in flight: see lockMarkScript).
func (r *Refresher) tryLock(ctx context.Context, loc string) (lk *lock, hasPending bool, err error) {
	return r.takeLock(ctx, loc, func(o lease.Options, with func(redis.Pipeliner, string)) (*lease.Lease, error) {
		return lease.TryAcquire(ctx, r.Redis, keyLock+loc, o, with)
	})
}

// lock waits for the location's lock until ctx is done.
func (r *Refresher) lock(ctx context.Context, loc string) (*lock, bool, error) {
	return r.takeLock(ctx, loc, func(o lease.Options, with func(redis.Pipeliner, string)) (*lease.Lease, error) {
		return lease.Acquire(ctx, r.Redis, keyLock+loc, o, 0, with)
	})
}

func (r *Refresher) takeLock(ctx context.Context, loc string, take func(lease.Options, func(redis.Pipeliner, string)) (*lease.Lease, error)) (*lock, bool, error) {
	var (
		pending *redis.IntCmd
		mark    *redis.Cmd
	)
	// On a Redis Cluster the lock and the in-flight set are in different
	// hash slots, out of one script's reach: call marks there.
	cluster := redisconn.IsCluster(r.Redis)
	o, beating := r.leaseOptions(loc)
	l, err := take(o, func(p redis.Pipeliner, owner string) {
		pending = p.Exists(ctx, keyPending+loc)
		if !cluster {
			mark = lockMarkScript.Eval(ctx, p, []string{keyLock + loc, keyInFlight}, owner, loc)
		}
	})
	if err != nil {
		return nil, false, fmt.Errorf("refresh %s: %w", loc, err)
	}
	if l == nil {
		return nil, false, nil
	}
	lk := &lock{r: r, loc: loc, lease: l, beating: beating}
	if mark != nil {
		if err := lk.lockMarked(mark, time.Now()); err != nil {
			lk.release(false)
			return nil, false, fmt.Errorf("refresh %s: %w", loc, err)
		}
	}
	return lk, pending.Val() == 1, nil
}

func (l *lock) lost() bool { return l.lease.Lost() }

// mayCall reports whether the lock can be vouched for enough to spend the
// refresh token under it: the lease holds and, when it names this worker,
// the worker's heartbeat was confirmed within half its TTL, before another
// worker could take the lock over. (Once GHL has answered, writing goes on
// regardless: the compare-and-set keeps a late write harmless.)
func (l *lock) mayCall() bool {
	return !l.lease.Lost() && (!l.beating || l.r.hb.fresh(l.r.now(), l.r.heartbeatTTL()/2))
}

// release drops the lock; settled also ends the location's in-flight mark
// and its pending slot (the database holds what GHL answered). Those go
// only while the lock is still this holder's: a holder that lost it must
// not end the mark of the refresh that took over. A mark the lock set
// goes too while GHL was not asked under it.
func (l *lock) release(settled bool) {
	ctx := context.Background()
	clearMark, dropPending := settled || (l.ownMark && !l.called), settled || l.dropPending
	if (clearMark || dropPending) && !redisconn.IsCluster(l.r.Redis) {
		// One round trip: the marks go in the transaction that drops
		// the lock, ahead of it, so the script still finds it held.
		err := l.lease.ReleaseAfter(ctx, func(p redis.Pipeliner) {
			settleScript.Eval(ctx, p, []string{keyLock + l.loc, keyInFlight, keyPending + l.loc}, l.lease.Owner(), l.loc, clearMark, dropPending)
		})
		if err != nil {
			l.r.log().Warn("releasing the refresh lock and clearing a settled refresh's marks", "location", l.loc, "err", err)
		}
		return
	}
	// On a Redis Cluster the lock never marks (ownMark is false).
	if settled || l.dropPending {
		if err := l.r.settle(ctx, l, settled); err != nil {
			l.r.log().Warn("clearing a settled refresh's marks", "location", l.loc, "err", err)
		}
	}
	if err := l.lease.Release(ctx, nil); err != nil {
		l.r.log().Warn("releasing the refresh lock", "location", l.loc, "err", err)
	}
}

// settleScript ends the in-flight mark (ARGV[3] true) and the pending
// slot (ARGV[4] true) of a location while its lock (KEYS[1]) is ARGV[1]'s.
var settleScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == "1" then redis.call("ZREM", KEYS[2], ARGV[2]) end
if ARGV[4] == "1" then redis.call("DEL", KEYS[3]) end
return 1`)

// ownerWorker returns the worker a lock's owner token names, if any.
func ownerWorker(owner string) (string, bool) {
	rest, ok := strings.CutPrefix(owner, ownerPrefix)
	if !ok {
		return "", false
	}
	worker, _, ok := strings.Cut(rest, ".")
	return worker, ok && worker != ""
}

// ownerPrefix starts the owner token of a lock taken by a worker that
// keeps a heartbeat: "w:<worker>.<random>".
const ownerPrefix = "w:"
