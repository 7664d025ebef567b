package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/internal/lease"
	"github.com/ghlsync/ghlsync/internal/redisconn"
	"github.com/ghlsync/ghlsync/internal/tokencrypt"
	"github.com/ghlsync/ghlsync/refresh"
	"github.com/ghlsync/ghlsync/store"
)

// PendingConnections keeps the tokens of a connection that GHL handed over
// but the database did not take, sealed in Redis, until a later pass writes
// them: an authorization code is single use, so tokens lost here could only
// be had again with a new consent. The web callback keeps them; the
// worker's Run writes them once the database is back. It is safe for
// concurrent use.
type PendingConnections struct {
	Store  Connector
	Redis  redis.UniversalClient
	Cipher *tokencrypt.Cipher
	Log    *slog.Logger
	Clock  clock.Clock
	// LockTTL is the TTL of the refresh lock taken while a pending
	// connection is written. Default 10s.
	LockTTL time.Duration
}

const (
	keyPendingConnect  = "ghlsync:oauth:pending:"
	keyPendingConnects = "ghlsync:oauth:pending"
	// pendingConnectPurpose binds the kept tokens' ciphertexts to this use.
	pendingConnectPurpose = "pending-connect-"
	// pendingConnectTTL outlasts any database outage; the refresh token
	// kept lives a year.
	pendingConnectTTL = 30 * 24 * time.Hour
)

// sealedConnection is a pending connection as kept in Redis: every token
// sealed, bound to the location id.
type sealedConnection struct {
	LocationID string    `json:"location_id"`
	CompanyID  string    `json:"company_id,omitempty"`
	UserType   string    `json:"user_type"`
	Scopes     string    `json:"scopes,omitempty"`
	Access     string    `json:"access"`
	Refresh    string    `json:"refresh"`
	ExpiresAt  time.Time `json:"expires_at"`
	AnsweredAt time.Time `json:"answered_at"`
}

func (p *PendingConnections) log() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.Default()
}

// Validate reports a required field that is not set.
func (p *PendingConnections) Validate() error {
	for name, missing := range map[string]bool{"Store": p.Store == nil, "Redis": p.Redis == nil, "Cipher": p.Cipher == nil} {
		if missing {
			return fmt.Errorf("web.PendingConnections: %s is required", name)
		}
	}
	return nil
}

// keep seals c into Redis and returns what was kept, for drop.
func (p *PendingConnections) keep(ctx context.Context, c store.Connection) (string, error) {
	if p.Cipher == nil {
		return "", errors.New("web: no token cipher to keep the connection with")
	}
	loc := c.LocationID
	access, refresh, err := store.SealTokens(p.Cipher, loc, pendingConnectPurpose, c.Tokens)
	if err != nil {
		return "", err
	}
	b, _ := json.Marshal(sealedConnection{
		LocationID: loc, CompanyID: c.CompanyID, UserType: c.UserType, Scopes: c.Scopes,
		Access: access, Refresh: refresh, ExpiresAt: c.Tokens.ExpiresAt.UTC(), AnsweredAt: clock.Or(p.Clock).Now().UTC(),
	})
	ctx = context.WithoutCancel(ctx)
	if redisconn.IsCluster(p.Redis) {
		// The connection and the list of them hash to two slots, which no
		// MULTI spans: the connection first, then its listing, which drop
		// never leaves out while the connection exists (see drop).
		if err = p.Redis.Set(ctx, keyPendingConnect+loc, b, pendingConnectTTL).Err(); err == nil {
			err = p.Redis.SAdd(ctx, keyPendingConnects, loc).Err()
		}
	} else {
		_, err = p.Redis.TxPipelined(ctx, func(pl redis.Pipeliner) error {
			pl.Set(ctx, keyPendingConnect+loc, b, pendingConnectTTL)
			pl.SAdd(ctx, keyPendingConnects, loc)
			return nil
		})
	}
	if err != nil {
		return "", fmt.Errorf("keeping the connection of %s in Redis: %w", loc, err)
	}
	return string(b), nil
}

// dropScript deletes a pending connection only if it is still the one
// that was kept: a newer connection of the location kept meanwhile stays.
var dropScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("DEL", KEYS[1])
end
if redis.call("EXISTS", KEYS[1]) == 0 then
  redis.call("SREM", KEYS[2], ARGV[2])
end
return 0`)

// drop removes the pending connection kept as kept, once the database
// holds it.
func (p *PendingConnections) drop(ctx context.Context, loc, kept string) error {
	ctx = context.WithoutCancel(ctx)
	var err error
	if redisconn.IsCluster(p.Redis) {
		err = p.dropApart(ctx, loc, kept)
	} else {
		err = dropScript.Run(ctx, p.Redis, []string{keyPendingConnect + loc, keyPendingConnects}, kept, loc).Err()
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("dropping the kept connection of %s: %w", loc, err)
	}
	return nil
}

// dropApart is dropScript on a Redis Cluster, one key at a time: the
// connection goes if it is still the one kept, then its listing, which is
// put back if a connection exists after all. A keep that runs alongside
// sets its connection before it lists it, so either its listing comes
// after the removal or its connection is seen by the check after it.
func (p *PendingConnections) dropApart(ctx context.Context, loc, kept string) error {
	if err := dropIfScript.Run(ctx, p.Redis, []string{keyPendingConnect + loc}, kept).Err(); err != nil {
		return err
	}
	if err := p.Redis.SRem(ctx, keyPendingConnects, loc).Err(); err != nil {
		return err
	}
	n, err := p.Redis.Exists(ctx, keyPendingConnect+loc).Result()
	if err != nil || n == 0 {
		// An error leaves a kept connection unlisted until it is kept
		// again; report it.
		return err
	}
	return p.Redis.SAdd(ctx, keyPendingConnects, loc).Err()
}

// dropIfScript deletes KEYS[1] while it holds ARGV[1].
var dropIfScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0`)

// open reads a kept connection back.
func (p *PendingConnections) open(raw string) (store.Connection, time.Time, error) {
	var sc sealedConnection
	if err := json.Unmarshal([]byte(raw), &sc); err != nil {
		return store.Connection{}, time.Time{}, err
	}
	toks, err := store.OpenTokens(p.Cipher, sc.LocationID, pendingConnectPurpose, sc.Access, sc.Refresh)
	if err != nil {
		return store.Connection{}, time.Time{}, err
	}
	toks.ExpiresAt = sc.ExpiresAt
	c := store.Connection{LocationID: sc.LocationID, CompanyID: sc.CompanyID, UserType: sc.UserType, Scopes: sc.Scopes, Tokens: toks}
	return c, sc.AnsweredAt, nil
}

// Run writes kept connections every interval until ctx is done.
func (p *PendingConnections) Run(ctx context.Context, interval time.Duration) {
	t := clock.Or(p.Clock).NewTicker(interval)
	defer t.Stop()
	for {
		p.CompleteOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

// CompleteOnce writes every kept connection whose location's refresh lock
// is free, and returns how many it wrote; the others wait for a later
// pass.
func (p *PendingConnections) CompleteOnce(ctx context.Context) int {
	locs, err := p.Redis.SMembers(ctx, keyPendingConnects).Result()
	if err != nil {
		if ctx.Err() == nil {
			p.log().Warn("reading kept OAuth connections", "err", err)
		}
		return 0
	}
	done := 0
	for _, loc := range locs {
		ok, err := p.complete(ctx, loc)
		if err != nil {
			p.log().Warn("a connection GHL accepted is still not in the database; retrying", "location", loc, "err", err)
			continue
		}
		if ok {
			done++
		}
	}
	return done
}

func (p *PendingConnections) complete(ctx context.Context, loc string) (bool, error) {
	ttl := p.LockTTL
	if ttl <= 0 {
		ttl = 10 * time.Second
	}
	lk, err := lease.TryAcquire(ctx, p.Redis, refresh.LockKey(loc), lease.Options{TTL: ttl, Clock: p.Clock}, nil)
	if err != nil || lk == nil {
		return false, err // a refresh of the location runs: the next pass
	}
	defer lk.Release(ctx, nil)
	raw, err := p.Redis.Get(ctx, keyPendingConnect+loc).Result()
	if errors.Is(err, redis.Nil) {
		return false, p.drop(ctx, loc, "")
	}
	if err != nil {
		return false, err
	}
	c, answeredAt, err := p.open(raw)
	if err != nil {
		return false, fmt.Errorf("reading the kept connection: %w", err)
	}
	// A copy whose drop failed after its write landed, or one that a newer
	// connection or a refresh since replaced: writing it would bring back
	// a refresh token that may be spent.
	cur, err := p.Store.Credential(lk.Context(), loc)
	switch {
	case err == nil && cur.RefreshedAt != nil && !cur.RefreshedAt.Before(answeredAt):
		p.log().Info("a kept connection is already in the database, or a newer one is; dropping it", "id", loc)
		return false, p.drop(ctx, loc, raw)
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return false, err
	}
	wctx, cancel := context.WithTimeout(lk.Context(), 10*time.Second)
	err = p.Store.Connect(wctx, c)
	cancel()
	if errors.Is(err, store.ErrTooLong) {
		p.log().Error("a kept connection cannot be stored; dropping it: connect the location again", "err", err)
		return false, p.drop(ctx, loc, raw)
	}
	if err != nil {
		return false, err
	}
	p.log().Info("GHL connected: a connection kept while the database was down is now stored",
		"id", loc, "user_type", c.UserType, "answered_at", answeredAt)
	return true, p.drop(ctx, loc, raw)
}
