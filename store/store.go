// Package store owns every table of ghlsync and every query on them, on
// PostgreSQL or SQLite through GORM.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/glebarez/sqlite"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"

	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/internal/tokencrypt"
)

// ErrNotFound is returned when a row does not exist.
var ErrNotFound = errors.New("store: not found")

// ErrNoDirectory is returned by Open for an SQLite file whose directory
// does not exist: a configuration mistake.
var ErrNoDirectory = errors.New("create it, or point DATABASE_URL elsewhere")

// Store is the database of ghlsync. It is safe for concurrent use.
type Store struct {
	db     *gorm.DB
	cipher *tokencrypt.Cipher
	clock  clock.Clock
	// patientWrites and sentWrites combine concurrent SavePatientSync
	// and RecordSent calls (groupcommit.go).
	patientWrites *groupCommit[*PatientSync]
	sentWrites    *groupCommit[sentWrite]
	// refreshWrites combines concurrent SaveRefreshedLogged calls on
	// PostgreSQL (saveRefreshedLoggedMany).
	refreshWrites *groupCommit[refreshWrite]
}

// Option configures Open.
type Option func(*Store)

// WithClock injects the clock used for timestamps that ghlsync writes.
func WithClock(c clock.Clock) Option { return func(s *Store) { s.clock = c } }

func (s *Store) now() time.Time { return clock.Or(s.clock).Now() }

// Open connects to a postgres:// or sqlite:// database URL. It does not
// migrate; call Migrate.
func Open(ctx context.Context, databaseURL string, cipher *tokencrypt.Cipher, opts ...Option) (*Store, error) {
	dialector, postgresDB, err := dialectorFor(databaseURL)
	if err != nil {
		return nil, err
	}
	db, err := gorm.Open(dialector, &gorm.Config{
		Logger:                                   logger.Discard,
		DisableForeignKeyConstraintWhenMigrating: true,
		TranslateError:                           true,
		NowFunc:                                  func() time.Time { return time.Now().UTC() },
	})
	if err != nil {
		return nil, fmt.Errorf("store.Open: %w", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, err
	}
	if postgresDB {
		// As many idle connections as open ones: a worker's token and
		// sync slots outnumber the pool, so it stays busy, and any
		// connection beyond the idle limit would be closed as soon as it
		// is returned and reopened at the next query, forking a new
		// PostgreSQL backend each time (a refresh sweep spent a tenth
		// of its time so). Idle ones still go after ConnMaxIdleTime.
		sqlDB.SetMaxOpenConns(20)
		sqlDB.SetMaxIdleConns(20)
		// A bounded life moves connections to a new primary after a
		// failover that leaves the old one's sockets open (a DNS or
		// virtual-IP switch), and spreads them again behind a pooler.
		sqlDB.SetConnMaxLifetime(30 * time.Minute)
	} else {
		// SQLite has one writer; a small pool and a busy timeout let
		// concurrent writers queue instead of failing.
		sqlDB.SetMaxOpenConns(4)
		sqlDB.SetMaxIdleConns(4)
	}
	sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := sqlDB.PingContext(pingCtx); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("store.Open: %w", err)
	}
	s := &Store{db: db, cipher: cipher}
	s.patientWrites = &groupCommit[*PatientSync]{key: func(st *PatientSync) string { return st.LocationID + "\x00" + st.ExternalID },
		one: s.savePatientSync, many: all(s.savePatientSyncs)}
	s.sentWrites = &groupCommit[sentWrite]{key: func(w sentWrite) string { return w.loc + "\x00" + w.kind + "\x00" + w.externalID },
		one: s.recordSent, many: all(s.recordSents)}
	s.refreshWrites = &groupCommit[refreshWrite]{key: func(w refreshWrite) string { return w.loc },
		one: s.saveRefreshedLoggedOne, many: s.saveRefreshedLoggedMany}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// single is the store's database for one statement that is atomic on its
// own: GORM wraps every create, update and delete in a transaction unless
// told not to, which costs a BEGIN and a COMMIT round trip each.
func (s *Store) single(ctx context.Context) *gorm.DB {
	return s.db.WithContext(ctx).Session(&gorm.Session{SkipDefaultTransaction: true})
}

// CountStatements counts in n every SQL statement the store sends: each
// query, write and raw statement, and the BEGIN and COMMIT of the
// transaction GORM wraps a write in or the store opens itself (counted at
// its first statement). Benchmarks report statements per task with it.
func CountStatements(n *atomic.Int64) Option {
	return func(s *Store) {
		var seen sync.Map // the explicit transactions already counted
		count := func(db *gorm.DB) {
			if db.DryRun {
				return // a subquery built into another statement
			}
			n.Add(1)
			if started, _ := db.InstanceGet("gorm:started_transaction"); started == true {
				n.Add(2)
			} else if tx, ok := db.Statement.ConnPool.(*sql.Tx); ok {
				if _, counted := seen.LoadOrStore(tx, true); !counted {
					n.Add(2)
				}
			}
		}
		cb := s.db.Callback()
		for _, err := range []error{
			cb.Query().After("*").Register("ghlsync:count_query", count),
			cb.Row().After("*").Register("ghlsync:count_row", count),
			cb.Raw().After("*").Register("ghlsync:count_raw", count),
			cb.Create().After("*").Register("ghlsync:count_create", count),
			cb.Update().After("*").Register("ghlsync:count_update", count),
			cb.Delete().After("*").Register("ghlsync:count_delete", count),
		} {
			if err != nil {
				panic("store.CountStatements: " + err.Error())
			}
		}
	}
}

// Dialector is the GORM dialector Open uses for databaseURL, for the test
// helpers of store/storetest that play the clinic system with plain SQL.
func Dialector(databaseURL string) (gorm.Dialector, error) {
	d, _, err := dialectorFor(databaseURL)
	return d, err
}

func dialectorFor(databaseURL string) (gorm.Dialector, bool, error) {
	switch {
	case strings.HasPrefix(databaseURL, "postgres://"), strings.HasPrefix(databaseURL, "postgresql://"):
		return postgres.Open(databaseURL), true, nil
	case strings.HasPrefix(databaseURL, "sqlite://"):
		path := strings.TrimPrefix(databaseURL, "sqlite://")
		query := ""
		if i := strings.IndexByte(path, '?'); i >= 0 {
			path, query = path[:i], path[i+1:]
		}
		if path == "" {
			return nil, false, errors.New("store.Open: sqlite:// needs a file path")
		}
		// SQLite reports a missing directory as "out of memory (14)".
		if dir := filepath.Dir(path); dir != "" && !strings.HasPrefix(path, ":memory:") {
			if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
				return nil, false, fmt.Errorf("store.Open: the directory %s of the SQLite file does not exist: %w", dir, ErrNoDirectory)
			}
		}
		q, err := url.ParseQuery(query)
		if err != nil {
			return nil, false, fmt.Errorf("store.Open: %w", err)
		}
		q.Add("_pragma", "busy_timeout(10000)")
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(NORMAL)")
		q.Set("_txlock", "immediate")
		return sqlite.Open("file:" + path + "?" + q.Encode()), false, nil
	default:
		return nil, false, errors.New("store.Open: DATABASE_URL must start with postgres:// or sqlite://")
	}
}

// Postgres reports whether the store runs on PostgreSQL.
func (s *Store) Postgres() bool { return s.db.Dialector.Name() == "postgres" }

// Close closes the database connections.
func (s *Store) Close() error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	return sqlDB.PingContext(ctx)
}

// models lists every table ghlsync migrates, in order.
var models = []any{
	&Credential{},
	&Schedule{},
	&Patient{},
	&Appointment{},
	&PatientSync{},
	&AppointmentSync{},
	&SyncRun{},
	&LocationSettings{},
	&Alert{},
	&AlertDelivery{},
	&RefreshRun{},
	&Practitioner{},
	&CalendarSetting{},
	&SyncWatermark{},
	&WebhookEvent{},
	&Change{},
	&SentFields{},
	&SeenFields{},
	&ReconcileRun{},
}

// Migrate creates or updates every table. On PostgreSQL it runs in one
// transaction that holds a transaction-scoped advisory lock, so several
// processes starting at once migrate one after the other instead of racing
// on CREATE TABLE, and the lock ends with the transaction: behind a pooler
// in transaction mode (PgBouncer) a session-level lock and its unlock could
// land on different server connections and leak. PostgreSQL's DDL is
// transactional, so a migration cut short leaves nothing half done.
func (s *Store) Migrate(ctx context.Context) error {
	db := s.db.WithContext(ctx)
	if !s.Postgres() {
		if err := db.AutoMigrate(models...); err != nil {
			return fmt.Errorf("store.Migrate: %w", err)
		}
		return s.createChangedIndexes(db)
	}
	h := fnv.New64a()
	h.Write([]byte("ghlsync.migrate"))
	key := int64(h.Sum64() >> 1)
	return db.Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec("SELECT pg_advisory_xact_lock(?)", key).Error; err != nil {
			return fmt.Errorf("store.Migrate: lock: %w", err)
		}
		if err := tx.AutoMigrate(models...); err != nil {
			return fmt.Errorf("store.Migrate: %w", err)
		}
		if err := s.createChangedIndexes(tx); err != nil {
			return err
		}
		return widenPrimaryKeys(tx)
	})
}

// widenPrimaryKeys widens primary-key columns that an older release made
// narrower than their model says (ids of 64 characters before MaxIDLen),
// which AutoMigrate leaves alone. Only PostgreSQL needs it: SQLite does not
// enforce a column's size.
func widenPrimaryKeys(db *gorm.DB) error {
	for _, m := range models {
		stmt := &gorm.Statement{DB: db}
		if err := stmt.Parse(m); err != nil {
			return fmt.Errorf("store.Migrate: %w", err)
		}
		cols, err := db.Migrator().ColumnTypes(m)
		if err != nil {
			return fmt.Errorf("store.Migrate: columns of %s: %w", stmt.Schema.Table, err)
		}
		for _, f := range stmt.Schema.PrimaryFields {
			if f.Size <= 0 {
				continue
			}
			for _, c := range cols {
				if n, ok := c.Length(); ok && c.Name() == f.DBName && n > 0 && n < int64(f.Size) {
					// GORM's AlterColumn would also re-declare the key.
					err := db.Exec(fmt.Sprintf("ALTER TABLE ? ALTER COLUMN ? TYPE varchar(%d)", f.Size),
						clause.Table{Name: stmt.Schema.Table}, clause.Column{Name: f.DBName}).Error
					if err != nil {
						return fmt.Errorf("store.Migrate: widening %s.%s: %w", stmt.Schema.Table, f.DBName, err)
					}
				}
			}
		}
	}
	return nil
}
