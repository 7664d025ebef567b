package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ghlsync/ghlsync/internal/tokencrypt"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Status of a connected location.
type Status string

// Statuses of a credential.
const (
	// StatusActive: the token is refreshed and the location is synced.
	StatusActive Status = "active"
	// StatusNeedsReauth: GHL refused the refresh token for good; someone
	// must connect the location again at /api/auth/connect.
	StatusNeedsReauth Status = "needs_reauth"
	// StatusInactive: GHL says the location is not active; the refresh
	// token still works once it is reactivated, so refreshes go on.
	StatusInactive Status = "inactive"
	// StatusUninstalled: the app was uninstalled from the location (GHL's
	// UNINSTALL webhook); its refresh token no longer works, so it is
	// neither refreshed nor synced until it is connected again.
	StatusUninstalled Status = "uninstalled"
	// StatusMissingScope: GHL refused a sync's call for a scope the
	// location's token was not granted (LastError names it). A refresh
	// keeps a token's scopes, so the location is neither synced nor
	// refreshed until it is connected again, after the scope is added to
	// the app.
	StatusMissingScope Status = "missing_scope"
)

// ConnectPath is where an operator connects a location, or connects it
// again; the web process serves it.
const ConnectPath = "/api/auth/connect"

// Problem says why a location in status s is neither refreshed nor synced
// (or, inactive, only retried) and what to do about it; "" when active.
// It is the one wording of each status's remedy.
func (s Status) Problem() string {
	switch s {
	case StatusActive:
		return ""
	case StatusNeedsReauth:
		return "GHL refused its refresh token for good; connect the location again at " + ConnectPath
	case StatusInactive:
		return "GHL says the location is not active"
	case StatusUninstalled:
		return "the app was uninstalled from the location; connect it again at " + ConnectPath
	case StatusMissingScope:
		return "GHL refused a call for a scope its token was not granted: add the scope to the app's scopes " +
			"in GHL's marketplace (and to GHL_SCOPES when it is set), then connect the location again at " + ConnectPath
	}
	return "status " + string(s)
}

// User types, as GHL spells them.
const (
	UserTypeLocation = "Location"
	UserTypeCompany  = "Company"
)

// MaxIDLen is the longest GHL id (location, company, contact, event,
// calendar) that ghlsync's columns hold. GHL's ids are 20 or so
// characters; the columns leave room for far more, and a longer id is
// refused with ErrTooLong rather than cut or lost.
const MaxIDLen = 255

// ErrTooLong is returned for an id longer than MaxIDLen.
var ErrTooLong = errors.New("longer than the columns hold")

// CheckID refuses an id that no GHL object has and no column should hold:
// longer than MaxIDLen (ErrTooLong), not UTF-8 (or holding U+FFFD, what a
// JSON decoder leaves of invalid UTF-8), or holding a control character
// such as a NUL. The error quotes the id safely.
func CheckID(id string) error {
	if len(id) > MaxIDLen {
		return fmt.Errorf("%d bytes long, at most %d: %w", len(id), MaxIDLen, ErrTooLong)
	}
	if !utf8.ValidString(id) || strings.ContainsRune(id, utf8.RuneError) {
		return fmt.Errorf("%q is not UTF-8", id)
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return fmt.Errorf("%q holds the control character %U", id, r)
		}
	}
	return nil
}

// Credential is one connected GHL location (or agency: UserType Company,
// with the company id in LocationID) and its OAuth tokens, sealed with
// AES-256-GCM. The token columns never hold plain text.
type Credential struct {
	LocationID      string `gorm:"primaryKey;size:255"`
	CompanyID       string `gorm:"size:255;index"`
	UserType        string `gorm:"size:16;not null;default:Location"`
	Scopes          string `gorm:"type:text"`
	AccessTokenEnc  string `gorm:"type:text;not null" json:"-"`
	RefreshTokenEnc string `gorm:"type:text;not null" json:"-"`
	KeyID           string `gorm:"size:16"`
	// TokenVersion counts the token pairs the row has held: Connect and
	// every refresh raise it. A refresh's write is a compare-and-set on the
	// version of the refresh token it spent, so that a late answer (its
	// worker lost the lock while GHL was slow) never overwrites a newer
	// rotation. Rows from before the column start at 0.
	TokenVersion int64     `gorm:"not null;default:0"`
	ExpiresAt    time.Time `gorm:"index"`
	RefreshedAt  *time.Time
	Status       Status `gorm:"size:16;not null;default:active;index"`
	LastError    string `gorm:"type:text"`
	// Name and Timezone are the location's as GHL last told them (GET
	// /locations/{id}), read at connect and again when InfoAt is old;
	// empty until then. Timezone is the zone GHL writes offset-less times
	// in.
	Name      string `gorm:"size:255"`
	Timezone  string `gorm:"size:64"`
	InfoAt    *time.Time
	CreatedAt time.Time
	UpdatedAt time.Time
}

// TableName pins the table name.
func (Credential) TableName() string { return "credentials" }

// InfoMaxAge is how long a location's name and time zone are trusted
// before they are read from GHL again.
const InfoMaxAge = 7 * 24 * time.Hour

// InfoStale reports whether the location's name and time zone should be
// read from GHL again at now.
func (c *Credential) InfoStale(now time.Time) bool {
	return c.InfoAt == nil || now.Sub(*c.InfoAt) >= InfoMaxAge
}

// SetLocationInfo records a location's name and time zone as GHL gave
// them. A location not connected is ErrNotFound.
func (s *Store) SetLocationInfo(ctx context.Context, loc, name, timezone string) error {
	if len(name) > 255 {
		name = strings.ToValidUTF8(name[:255], "")
	}
	if len(timezone) > 64 {
		return fmt.Errorf("store.SetLocationInfo %s: a time zone of %d bytes: %w", loc, len(timezone), ErrTooLong)
	}
	now := s.now().UTC()
	res := s.db.WithContext(ctx).Model(&Credential{}).Where("location_id = ?", loc).
		Updates(map[string]any{"name": name, "timezone": timezone, "info_at": now})
	if res.Error != nil {
		return fmt.Errorf("store.SetLocationInfo %s: %w", loc, res.Error)
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("store.SetLocationInfo %s: %w", loc, ErrNotFound)
	}
	return nil
}

// Tokens are the decrypted tokens of a location. They are never serialised
// or logged: String and LogValue mask them.
type Tokens struct {
	AccessToken  string `json:"-"`
	RefreshToken string `json:"-"`
	ExpiresAt    time.Time
}

func (t Tokens) String() string {
	return fmt.Sprintf("Tokens{access:[redacted] refresh:[redacted] expires:%s}", t.ExpiresAt.Format(time.RFC3339))
}

// LogValue masks the tokens in structured logs.
func (t Tokens) LogValue() slog.Value {
	return slog.GroupValue(slog.Time("expires_at", t.ExpiresAt))
}

// Connection is what the OAuth callback learned about a location.
type Connection struct {
	LocationID string
	CompanyID  string
	UserType   string
	Scopes     string
	Tokens     Tokens
}

func (s *Store) seal(loc string, t Tokens) (access, refresh string, err error) {
	if s.cipher == nil {
		return "", "", errors.New("store: no token cipher configured")
	}
	return SealTokens(s.cipher, loc, "", t)
}

// SealTokens seals t's access and refresh tokens with c, each bound to loc
// and to purpose ("" for the credentials table's columns; "pending-" and
// "pending-connect-" for the copies kept in Redis), so that a sealed token
// opens only as what it was sealed for.
func SealTokens(c *tokencrypt.Cipher, loc, purpose string, t Tokens) (access, refresh string, err error) {
	if access, err = c.Seal(t.AccessToken, loc+"/"+purpose+"access"); err != nil {
		return "", "", err
	}
	if refresh, err = c.Seal(t.RefreshToken, loc+"/"+purpose+"refresh"); err != nil {
		return "", "", err
	}
	return access, refresh, nil
}

// OpenTokens opens what SealTokens sealed for loc and purpose; ExpiresAt is
// left to the caller.
func OpenTokens(c *tokencrypt.Cipher, loc, purpose, access, refresh string) (Tokens, error) {
	a, err := c.Open(access, loc+"/"+purpose+"access")
	if err != nil {
		return Tokens{}, fmt.Errorf("access token: %w", err)
	}
	r, err := c.Open(refresh, loc+"/"+purpose+"refresh")
	if err != nil {
		return Tokens{}, fmt.Errorf("refresh token: %w", err)
	}
	return Tokens{AccessToken: a, RefreshToken: r}, nil
}

// Tokens decrypts the tokens of c.
func (s *Store) Tokens(c *Credential) (Tokens, error) {
	if s.cipher == nil {
		return Tokens{}, errors.New("store: no token cipher configured")
	}
	t, err := OpenTokens(s.cipher, c.LocationID, "", c.AccessTokenEnc, c.RefreshTokenEnc)
	if err != nil {
		return Tokens{}, fmt.Errorf("store.Tokens %s: %w", c.LocationID, err)
	}
	t.ExpiresAt = c.ExpiresAt
	return t, nil
}

// Connect stores (or replaces) the tokens of a newly connected location and
// makes it active.
func (s *Store) Connect(ctx context.Context, c Connection) error {
	for what, id := range map[string]string{"location id": c.LocationID, "company id": c.CompanyID} {
		if len(id) > MaxIDLen {
			return fmt.Errorf("store.Connect: a %s of %d bytes (at most %d): %w", what, len(id), MaxIDLen, ErrTooLong)
		}
	}
	access, refresh, err := s.seal(c.LocationID, c.Tokens)
	if err != nil {
		return fmt.Errorf("store.Connect %s: %w", c.LocationID, err)
	}
	now := s.now().UTC()
	if c.UserType == "" {
		c.UserType = UserTypeLocation
	}
	row := Credential{
		LocationID: c.LocationID, CompanyID: c.CompanyID, UserType: c.UserType, Scopes: c.Scopes,
		AccessTokenEnc: access, RefreshTokenEnc: refresh, KeyID: s.cipher.KeyID(),
		ExpiresAt: c.Tokens.ExpiresAt.UTC(), RefreshedAt: &now, Status: StatusActive,
		TokenVersion: 1, CreatedAt: now, UpdatedAt: now,
	}
	// A new connection is a new token pair: its version moves on, so a
	// refresh of the old pair still in flight cannot overwrite it.
	updates := clause.AssignmentColumns([]string{"company_id", "user_type", "scopes", "access_token_enc",
		"refresh_token_enc", "key_id", "expires_at", "refreshed_at", "status", "last_error", "updated_at"})
	updates = append(updates, clause.Assignment{
		Column: clause.Column{Name: "token_version"},
		// Qualified: PostgreSQL calls a bare column of an upsert ambiguous.
		Value: gorm.Expr("credentials.token_version + 1"),
	})
	err = s.db.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "location_id"}},
		DoUpdates: updates,
	}).Create(&row).Error
	if err != nil {
		return fmt.Errorf("store.Connect %s: %w", c.LocationID, err)
	}
	return nil
}

// Credential returns the credential of a location.
func (s *Store) Credential(ctx context.Context, loc string) (*Credential, error) {
	// Every refresh reads its location's row under the lock: one plain
	// query, scanned by hand, costs a fraction of GORM's building and
	// reflecting.
	c, err := scanCredential(s.db.WithContext(ctx).Raw(credentialSQL+" WHERE location_id = ?", loc).Row())
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store.Credential %s: %w", loc, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store.Credential %s: %w", loc, err)
	}
	return c, nil
}

// CredentialsOf reads the credentials of locs in one query, as Credential
// reads one: the refreshes that run at once read their locations
// together. A location without a credential is missing from the map.
func (s *Store) CredentialsOf(ctx context.Context, locs []string) (map[string]*Credential, error) {
	return s.credentialsOf(ctx, "store.CredentialsOf", credentialSQL+" WHERE location_id IN ?", locs, scanCredential)
}

// credentialsOf runs q, a query of locs' credentials, scanning each row
// with scan, and maps what it read by location.
func (s *Store) credentialsOf(ctx context.Context, op, q string, locs []string, scan func(row rowScanner) (*Credential, error)) (map[string]*Credential, error) {
	rows, err := s.db.WithContext(ctx).Raw(q, locs).Rows()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	defer rows.Close()
	m := make(map[string]*Credential, len(locs))
	for rows.Next() {
		c, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		m[c.LocationID] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return m, nil
}

// rowScanner is a *sql.Row or *sql.Rows.
type rowScanner interface{ Scan(dest ...any) error }

// scanCredential scans a row of credentialSQL. The text columns are read
// through COALESCE and the times as nullable, so that a NULL that a column
// added by a later migration left in an older row reads as the zero
// value, as GORM reads it.
func scanCredential(row rowScanner) (*Credential, error) {
	var (
		c                         Credential
		expires, created, updated sql.NullTime
		refreshedAt, infoAt       *time.Time
		status                    string
	)
	err := row.Scan(
		&c.LocationID, &c.CompanyID, &c.UserType, &c.Scopes, &c.AccessTokenEnc, &c.RefreshTokenEnc, &c.KeyID,
		&c.TokenVersion, &expires, &refreshedAt, &status, &c.LastError, &c.Name, &c.Timezone, &infoAt, &created, &updated)
	if err != nil {
		return nil, err
	}
	c.Status = Status(status)
	c.ExpiresAt, c.CreatedAt, c.UpdatedAt = expires.Time, created.Time, updated.Time
	c.RefreshedAt, c.InfoAt = refreshedAt, infoAt
	return &c, nil
}

// credentialSQL reads every column of Credential, in its order.
const credentialSQL = `SELECT location_id, COALESCE(company_id, ''), COALESCE(user_type, ''), COALESCE(scopes, ''),
	access_token_enc, refresh_token_enc, COALESCE(key_id, ''), token_version, expires_at, refreshed_at, status,
	COALESCE(last_error, ''), COALESCE(name, ''), COALESCE(timezone, ''), info_at, created_at, updated_at
	FROM credentials`

// refreshStatesSQL reads what RefreshStates returns: what decides whether
// a location's token needs a refresh, none of its tokens.
const refreshStatesSQL = `SELECT location_id, status, token_version, expires_at, refreshed_at
	FROM credentials WHERE location_id IN ?`

// RefreshStates reads, for each of locs, what decides whether its token
// needs refreshing (its status, token version, expiry and last refresh),
// without the sealed tokens and the rest of the row, in one query: the
// refreshes that run at once read their locations together, and most of
// them (the token is not due, or another refresh answered them) stop
// there. A location without a credential is missing from the map. It is
// scanned by hand, as Credential is: GORM's building and reflecting cost
// more than the query.
func (s *Store) RefreshStates(ctx context.Context, locs []string) (map[string]*Credential, error) {
	return s.credentialsOf(ctx, "store.RefreshStates", refreshStatesSQL, locs, func(row rowScanner) (*Credential, error) {
		var (
			c       Credential
			status  string
			expires sql.NullTime
		)
		if err := row.Scan(&c.LocationID, &status, &c.TokenVersion, &expires, &c.RefreshedAt); err != nil {
			return nil, err
		}
		c.Status, c.ExpiresAt = Status(status), expires.Time
		return &c, nil
	})
}

// ErrStale says a write about a refresh token lost its compare-and-set:
// the row holds a newer token pair than the one that refresh spent (another
// worker refreshed meanwhile, or the location was connected again), so
// what it brings is the older rotation and must not be stored.
var ErrStale = errors.New("store: the stored token is newer than the one this refresh spent")

// SaveRefreshed stores the tokens of a completed refresh: the location is
// active again (but for missing_scope, which a refresh cannot cure), its
// last error is cleared and its token version moves on.
// It is a compare-and-set: spent is the TokenVersion of the credential
// whose refresh token was exchanged for t, and when the row has moved past
// it the write is refused with ErrStale. An uninstalled location is
// ErrNotFound.
func (s *Store) SaveRefreshed(ctx context.Context, loc string, spent int64, t Tokens, refreshedAt time.Time) error {
	// One UPDATE is atomic on its own: no transaction around it (two
	// round trips fewer).
	const op = "store.SaveRefreshed"
	if err := s.saveRefreshed(s.single(ctx), op, loc, spent, t, refreshedAt); !errors.Is(err, errUnchanged) {
		return err
	}
	return s.whyUnchanged(ctx, op, loc, spent)
}

// SaveRefreshedLogged is SaveRefreshed that also logs run in the refresh
// history (pruning as pruneDue says) with it: on PostgreSQL in one
// statement (saveRefreshedLoggedSQL), on SQLite in one transaction. One
// commit, so one wait for the database to flush its log, where the token
// write and its history entry each committed on their own would cost two.
// On PostgreSQL the writes that come while one is being written share the
// next statement and its commit (refreshWrites); each call still returns
// once its own token is stored. The entry is stored only with the token: a
// write that fails (ErrStale, ErrNotFound or the database's error) stores
// neither.
func (s *Store) SaveRefreshedLogged(ctx context.Context, loc string, spent int64, t Tokens, refreshedAt time.Time, run *RefreshRun) error {
	const op = "store.SaveRefreshedLogged"
	var err error
	if s.Postgres() {
		s.stampRun(run)
		err = s.saveRefreshedLoggedPostgres(ctx, op, loc, spent, t, refreshedAt, run)
	} else {
		err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			if err := s.saveRefreshed(tx, op, loc, spent, t, refreshedAt); err != nil {
				return err
			}
			if err := s.recordRun(tx, run, pruneDue(spent+1)); err != nil {
				return fmt.Errorf("%s %s: refresh history: %w", op, loc, err)
			}
			return nil
		})
	}
	if errors.Is(err, errUnchanged) {
		// Told apart after the rollback, outside the transaction.
		return s.whyUnchanged(ctx, op, loc, spent)
	}
	return err
}

// saveRefreshedLoggedSQL is SaveRefreshedLogged on PostgreSQL: the
// compare-and-set UPDATE of saveRefreshed, the history INSERT fed by the
// rows it changed (none when it lost: no entry), and, when pruneDue, the
// prune of pruneRuns, one statement committed on its own: no BEGIN and
// COMMIT round trips, and no statement built per call. The prune's
// subquery sees the table as it was before the statement, without the new
// entry, hence one fewer old entry kept than KeepRefreshRuns.
const (
	saveRefreshedLoggedSQL = `WITH u AS (
	UPDATE credentials SET access_token_enc = ?, refresh_token_enc = ?, key_id = ?, expires_at = ?, refreshed_at = ?,
		status = CASE WHEN status = ? THEN status ELSE ? END,
		last_error = CASE WHEN status = ? THEN last_error ELSE '' END,
		token_version = ?, updated_at = ?
	WHERE location_id = ? AND status <> ? AND token_version = ?
	RETURNING location_id
), i AS (
	INSERT INTO refresh_runs (location_id, at, outcome, reason, message, expires_at)
	SELECT location_id, ?::timestamptz, ?, ?, ?, ?::timestamptz FROM u
	RETURNING id
)`
	saveRefreshedLoggedPruneSQL = `, d AS (
	DELETE FROM refresh_runs WHERE location_id = ? AND EXISTS (SELECT 1 FROM i) AND id < (
		SELECT id FROM refresh_runs WHERE location_id = ? ORDER BY id DESC OFFSET ? LIMIT 1)
)`
)

// refreshWrite is one SaveRefreshedLogged on PostgreSQL, its tokens
// sealed and its run stamped.
type refreshWrite struct {
	loc, access, refresh string
	spent                int64
	expires, refreshedAt time.Time
	run                  *RefreshRun
	runExpires           *time.Time
}

func (s *Store) saveRefreshedLoggedPostgres(ctx context.Context, op, loc string, spent int64, t Tokens, refreshedAt time.Time, run *RefreshRun) error {
	access, refresh, err := s.seal(loc, t)
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, loc, err)
	}
	w := refreshWrite{loc: loc, access: access, refresh: refresh, spent: spent,
		expires: t.ExpiresAt.UTC(), refreshedAt: refreshedAt.UTC(), run: run}
	if run.ExpiresAt != nil {
		e := run.ExpiresAt.UTC()
		w.runExpires = &e
	}
	if pruneDue(spent + 1) {
		// One in refreshRunsPruneEvery also prunes: on its own.
		err = s.saveRefreshedLoggedOne(ctx, w)
	} else {
		err = s.refreshWrites.save(ctx, w)
	}
	if err != nil && !errors.Is(err, errUnchanged) {
		return fmt.Errorf("%s %s: %w", op, loc, err)
	}
	return err
}

// saveRefreshedLoggedOne writes w with saveRefreshedLoggedSQL.
func (s *Store) saveRefreshedLoggedOne(ctx context.Context, w refreshWrite) error {
	run := w.run
	args := []any{
		w.access, w.refresh, s.cipher.KeyID(), w.expires, w.refreshedAt,
		StatusMissingScope, StatusActive, StatusMissingScope, w.spent + 1, s.now().UTC(),
		w.loc, StatusUninstalled, w.spent,
		run.At, run.Outcome, run.Reason, run.Message, w.runExpires,
	}
	q := saveRefreshedLoggedSQL
	if pruneDue(w.spent + 1) {
		q += saveRefreshedLoggedPruneSQL
		args = append(args, w.loc, w.loc, KeepRefreshRuns-2)
	}
	q += " SELECT id FROM i"
	var id int64
	err := s.db.WithContext(ctx).Raw(q, args...).Row().Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return errUnchanged
	}
	if err != nil {
		return err
	}
	run.ID = id
	return nil
}

// saveRefreshedLoggedManySQL is saveRefreshedLoggedSQL for several
// locations in one statement (the VALUES rows are added per call): the
// refreshes a worker's token slots finish together share one statement
// and one commit. It returns the locations it wrote, with their entries'
// ids; a location it did not write lost its compare-and-set (or is
// uninstalled), which saveRefreshedLoggedOne then tells its caller.
const saveRefreshedLoggedManySQL = `WITH v (location_id, access_token_enc, refresh_token_enc, expires_at, refreshed_at, spent,
	run_at, outcome, reason, message, run_expires) AS (VALUES %s
), u AS (
	UPDATE credentials c SET access_token_enc = v.access_token_enc, refresh_token_enc = v.refresh_token_enc, key_id = ?,
		expires_at = v.expires_at, refreshed_at = v.refreshed_at,
		status = CASE WHEN c.status = ? THEN c.status ELSE ? END,
		last_error = CASE WHEN c.status = ? THEN c.last_error ELSE '' END,
		token_version = v.spent + 1, updated_at = ?
	FROM v WHERE c.location_id = v.location_id AND c.status <> ? AND c.token_version = v.spent
	RETURNING c.location_id
), i AS (
	INSERT INTO refresh_runs (location_id, at, outcome, reason, message, expires_at)
	SELECT v.location_id, v.run_at, v.outcome, v.reason, v.message, v.run_expires FROM v JOIN u ON u.location_id = v.location_id
	RETURNING location_id, id
) SELECT location_id, id FROM i`

const (
	// The first VALUES row names the types; the others follow it.
	refreshWriteFirstRow = "(?::text, ?::text, ?::text, ?::timestamptz, ?::timestamptz, ?::bigint, ?::timestamptz, ?::text, ?::text, ?::text, ?::timestamptz)"
	refreshWriteRow      = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

func (s *Store) saveRefreshedLoggedMany(ctx context.Context, ws []refreshWrite) ([]bool, error) {
	rows := make([]string, len(ws))
	args := make([]any, 0, 11*len(ws)+6)
	for i, w := range ws {
		rows[i] = refreshWriteRow
		run := w.run
		args = append(args, w.loc, w.access, w.refresh, w.expires, w.refreshedAt, w.spent,
			run.At, run.Outcome, run.Reason, run.Message, w.runExpires)
	}
	rows[0] = refreshWriteFirstRow
	args = append(args, s.cipher.KeyID(), StatusMissingScope, StatusActive, StatusMissingScope, s.now().UTC(), StatusUninstalled)
	q := fmt.Sprintf(saveRefreshedLoggedManySQL, strings.Join(rows, ", "))
	res, err := s.db.WithContext(ctx).Raw(q, args...).Rows()
	if err != nil {
		return nil, fmt.Errorf("(%d together): %w", len(ws), err)
	}
	defer res.Close()
	ids := make(map[string]int64, len(ws))
	for res.Next() {
		var (
			loc string
			id  int64
		)
		if err := res.Scan(&loc, &id); err != nil {
			return nil, fmt.Errorf("(%d together): %w", len(ws), err)
		}
		ids[loc] = id
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("(%d together): %w", len(ws), err)
	}
	left := make([]bool, len(ws))
	for i, w := range ws {
		id, ok := ids[w.loc]
		left[i] = !ok
		if ok {
			w.run.ID = id
		}
	}
	return left, nil
}

// errUnchanged says saveRefreshed's compare-and-set changed no row; the
// caller tells why (whyUnchanged).
var errUnchanged = errors.New("store: no row changed")

func (s *Store) saveRefreshed(db *gorm.DB, op, loc string, spent int64, t Tokens, refreshedAt time.Time) error {
	access, refresh, err := s.seal(loc, t)
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, loc, err)
	}
	// An uninstall that landed meanwhile wins: the app is gone from the
	// location, whatever the refresh brought back.
	res := db.Model(&Credential{}).
		Where("location_id = ? AND status <> ? AND token_version = ?", loc, StatusUninstalled, spent).
		Updates(map[string]any{
			"access_token_enc":  access,
			"refresh_token_enc": refresh,
			"key_id":            s.cipher.KeyID(),
			"expires_at":        t.ExpiresAt.UTC(),
			"refreshed_at":      refreshedAt.UTC(),
			// A refresh keeps a token's scopes: a location missing one
			// stays marked until it is connected again.
			"status":        gorm.Expr("CASE WHEN status = ? THEN status ELSE ? END", StatusMissingScope, StatusActive),
			"last_error":    gorm.Expr("CASE WHEN status = ? THEN last_error ELSE '' END", StatusMissingScope),
			"token_version": spent + 1,
			"updated_at":    s.now().UTC(),
		})
	if res.Error != nil {
		return fmt.Errorf("%s %s: %w", op, loc, res.Error)
	}
	if res.RowsAffected == 0 {
		return errUnchanged
	}
	return nil
}

// SetRefreshStatus records what GHL answered a refresh that spent the
// token of version spent (needs_reauth, inactive), under the same
// compare-and-set as SaveRefreshed: a refusal of an older token says
// nothing about the newer one the row holds (ErrStale). Uninstalled stays.
func (s *Store) SetRefreshStatus(ctx context.Context, loc string, spent int64, st Status, lastError string) error {
	res := s.db.WithContext(ctx).Model(&Credential{}).
		Where("location_id = ? AND status <> ? AND token_version = ?", loc, StatusUninstalled, spent).
		Updates(map[string]any{"status": st, "last_error": lastError, "updated_at": s.now().UTC()})
	if res.Error != nil {
		return fmt.Errorf("store.SetRefreshStatus %s: %w", loc, res.Error)
	}
	if res.RowsAffected == 0 {
		return s.whyUnchanged(ctx, "store.SetRefreshStatus", loc, spent)
	}
	return nil
}

// whyUnchanged tells why a compare-and-set on a location's token version
// changed no row: ErrStale when the row moved past spent, else ErrNotFound
// (no such location, or uninstalled).
func (s *Store) whyUnchanged(ctx context.Context, op, loc string, spent int64) error {
	var c Credential
	err := s.db.WithContext(ctx).Select("token_version", "status").Where("location_id = ?", loc).Take(&c).Error
	switch {
	case errors.Is(err, gorm.ErrRecordNotFound):
		return fmt.Errorf("%s %s: %w", op, loc, ErrNotFound)
	case err != nil:
		return fmt.Errorf("%s %s: %w", op, loc, err)
	case c.Status != StatusUninstalled && c.TokenVersion != spent:
		return fmt.Errorf("%s %s: %w (stored version %d, spent %d)", op, loc, ErrStale, c.TokenVersion, spent)
	}
	return fmt.Errorf("%s %s: %w", op, loc, ErrNotFound)
}

// SetStatus records a location's status and why.
//
// Only a new connection (Connect) ends uninstalled: other statuses, which
// a refresh in flight may still report, do not overwrite it.
func (s *Store) SetStatus(ctx context.Context, loc string, st Status, lastError string) error {
	q := s.db.WithContext(ctx).Model(&Credential{}).Where("location_id = ?", loc)
	if st != StatusUninstalled {
		q = q.Where("status <> ?", StatusUninstalled)
	}
	res := q.Updates(map[string]any{
		"status": st, "last_error": lastError, "updated_at": s.now().UTC(),
	})
	if res.Error != nil {
		return fmt.Errorf("store.SetStatus %s: %w", loc, res.Error)
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("store.SetStatus %s: %w", loc, ErrNotFound)
	}
	return nil
}

// DueForRefresh lists the active locations whose token expires before the
// given time, and every inactive location: trying those again is how
// ghlsync learns that GHL reactivated them (GHL refuses the refresh without
// spending the token while the location is inactive).
func (s *Store) DueForRefresh(ctx context.Context, before time.Time) ([]string, error) {
	var ids []string
	err := s.db.WithContext(ctx).Model(&Credential{}).
		Where("(status = ? AND expires_at < ?) OR status = ?", StatusActive, before.UTC(), StatusInactive).
		Order("expires_at").Pluck("location_id", &ids).Error
	if err != nil {
		return nil, fmt.Errorf("store.DueForRefresh: %w", err)
	}
	return ids, nil
}

// Refreshable lists every location whose token ghlsync keeps alive.
func (s *Store) Refreshable(ctx context.Context) ([]string, error) {
	var ids []string
	err := s.db.WithContext(ctx).Model(&Credential{}).
		Where("status IN ?", []Status{StatusActive, StatusInactive}).
		Order("location_id").Pluck("location_id", &ids).Error
	if err != nil {
		return nil, fmt.Errorf("store.Refreshable: %w", err)
	}
	return ids, nil
}

// DueForRefreshPage is a page of DueForRefresh's locations, ordered by
// location id: up to limit of them after the id after ("" for the first
// page). Paging by key (not by offset) costs the same on every page and
// neither skips nor repeats a location while refreshes move the others
// out of the due set.
func (s *Store) DueForRefreshPage(ctx context.Context, before time.Time, after string, limit int) ([]string, error) {
	var ids []string
	err := s.db.WithContext(ctx).Model(&Credential{}).
		Where("((status = ? AND expires_at < ?) OR status = ?) AND location_id > ?", StatusActive, before.UTC(), StatusInactive, after).
		Order("location_id").Limit(limit).Pluck("location_id", &ids).Error
	if err != nil {
		return nil, fmt.Errorf("store.DueForRefreshPage: %w", err)
	}
	return ids, nil
}

// RefreshablePage is a page of Refreshable's locations, as
// DueForRefreshPage pages.
func (s *Store) RefreshablePage(ctx context.Context, after string, limit int) ([]string, error) {
	var ids []string
	err := s.db.WithContext(ctx).Model(&Credential{}).
		Where("status IN ? AND location_id > ?", []Status{StatusActive, StatusInactive}, after).
		Order("location_id").Limit(limit).Pluck("location_id", &ids).Error
	if err != nil {
		return nil, fmt.Errorf("store.RefreshablePage: %w", err)
	}
	return ids, nil
}

// Credentials lists every credential, ordered by location id.
func (s *Store) Credentials(ctx context.Context) ([]Credential, error) {
	var cs []Credential
	if err := s.db.WithContext(ctx).Order("location_id").Find(&cs).Error; err != nil {
		return nil, fmt.Errorf("store.Credentials: %w", err)
	}
	return cs, nil
}

// SetCompanyStatus records a status and why for an agency and every
// location of it: the agency's own row (LocationID companyID) and each row
// whose CompanyID is companyID. It returns how many rows it changed; none is
// not an error.
func (s *Store) SetCompanyStatus(ctx context.Context, companyID string, st Status, lastError string) (int64, error) {
	if companyID == "" {
		// An empty id would match every location without a company.
		return 0, errors.New("store.SetCompanyStatus: empty company id")
	}
	res := s.db.WithContext(ctx).Model(&Credential{}).
		Where("location_id = ? OR company_id = ?", companyID, companyID).
		Updates(map[string]any{"status": st, "last_error": lastError, "updated_at": s.now().UTC()})
	if res.Error != nil {
		return 0, fmt.Errorf("store.SetCompanyStatus %s: %w", companyID, res.Error)
	}
	return res.RowsAffected, nil
}
