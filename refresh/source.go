package refresh

import (
	"context"
	"sync"
	"time"

	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/store"
)

// Renewer refreshes one location's token, single flight; *Refresher is
// one.
type Renewer interface {
	Refresh(ctx context.Context, req Request) (Result, error)
}

// TokenReader reads a location's stored tokens; *store.Store is one.
type TokenReader interface {
	Credential(ctx context.Context, loc string) (*store.Credential, error)
	Tokens(c *store.Credential) (store.Tokens, error)
}

// Source hands out one location's access token for GHL API calls, in the
// shape of x/oauth2's ReuseTokenSource: the stored token is reused until
// GHL rejects it (Rejected) or it is about to expire, and then renewed
// through the single-flight Renewer, once however many calls saw it
// rejected. It is safe for concurrent use.
type Source struct {
	// Location whose token this is.
	Location string
	Store    TokenReader
	Renewer  Renewer
	// Check, when set, vets the credential each time it is read (a sync
	// refuses a location that is not active); its error is returned as is.
	Check func(*store.Credential) error
	// Early renews a token that expires within it before handing it out,
	// rather than earn a 401 per call in flight; 1m when zero.
	Early time.Duration
	Clock clock.Clock

	mu      sync.Mutex // guards token, readAt and version; held during a renewal
	token   string
	readAt  time.Time
	version int64 // the stored token version token came with
}

// Token returns the current access token, reading it on first use.
func (s *Source) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != "" {
		return s.token, nil
	}
	c, err := s.read(ctx)
	if err != nil {
		return "", err
	}
	early := s.Early
	if early <= 0 {
		early = time.Minute
	}
	if c.ExpiresAt.Before(s.readAt.Add(early)) {
		if err := s.renewLocked(ctx); err != nil {
			return "", err
		}
	}
	return s.token, nil
}

// Rejected says GHL rejected token (a 401) and renews it, unless another
// call already did since token was handed out.
func (s *Source) Rejected(ctx context.Context, token string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != token {
		return nil
	}
	return s.renewLocked(ctx)
}

// Version is the stored token version of the token last handed out, 0
// before the first.
func (s *Source) Version() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

// renewLocked asks the Renewer for a token newer than the one read (if
// another worker refreshed since, that one is fine: single flight), then
// reads it. "Newer" is by token version, not by this worker's clock, which
// may disagree with the time a refresh was recorded at.
func (s *Source) renewLocked(ctx context.Context) error {
	// A row from before token versions (0) asks by time instead: a zero
	// RequestedAt is now on the shared clock.
	req := Request{LocationID: s.Location, NewerThan: s.version, Force: true}
	if _, err := s.Renewer.Refresh(ctx, req); err != nil {
		return err
	}
	_, err := s.read(ctx)
	return err
}

// read loads the stored token into s.
func (s *Source) read(ctx context.Context) (*store.Credential, error) {
	c, err := s.Store.Credential(ctx, s.Location)
	if err != nil {
		return nil, err
	}
	if s.Check != nil {
		if err := s.Check(c); err != nil {
			return nil, err
		}
	}
	toks, err := s.Store.Tokens(c)
	if err != nil {
		return nil, err
	}
	s.token, s.readAt, s.version = toks.AccessToken, clock.Or(s.Clock).Now(), c.TokenVersion
	return c, nil
}
