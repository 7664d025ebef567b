package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
)

// oldCredential is the credentials table with the 64-character id columns
// of older releases (and token_version, whose own migration from before
// it TestMigrateAddsTokenVersion covers), so that the store can write its
// row before migrating.
type oldCredential struct {
	LocationID      string `gorm:"primaryKey;size:64"`
	CompanyID       string `gorm:"size:64;index"`
	UserType        string `gorm:"size:16;not null;default:Location"`
	Scopes          string `gorm:"type:text"`
	AccessTokenEnc  string `gorm:"type:text;not null"`
	RefreshTokenEnc string `gorm:"type:text;not null"`
	KeyID           string `gorm:"size:16"`
	TokenVersion    int64  `gorm:"not null;default:0"`
	ExpiresAt       time.Time
	RefreshedAt     *time.Time
	Status          string `gorm:"size:16;not null;default:active;index"`
	LastError       string `gorm:"type:text"`
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

func (oldCredential) TableName() string { return "credentials" }

// A database made by an older release, with 64-character id columns,
// migrates to columns that hold a 255-byte location and company id, and
// keeps the rows it had.
func TestMigrateWidensIDColumns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := storetest.DatabaseURL(t)
	if err := storetest.DB(t, dbURL).AutoMigrate(&oldCredential{}); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, dbURL, testenv.Cipher(t, testenv.NewKey(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	exp := time.Now().Add(time.Hour)
	connect(t, st, "old-loc", "comp1", store.UserTypeLocation, exp)
	must(t, st.Migrate(ctx))

	long := strings.Repeat("L", store.MaxIDLen)
	company := strings.Repeat("C", store.MaxIDLen)
	connect(t, st, long, company, store.UserTypeLocation, exp)
	for _, loc := range []string{"old-loc", long} {
		c, err := st.Credential(ctx, loc)
		must(t, err)
		toks, err := st.Tokens(c)
		must(t, err)
		if toks.RefreshToken != "rt-"+loc {
			t.Errorf("%.10s…: refresh token %q", loc, toks.RefreshToken)
		}
	}
	if c, _ := st.Credential(ctx, long); c == nil || c.CompanyID != company {
		t.Fatalf("the long company id was not kept whole")
	}
}

// An id longer than the columns is refused with ErrTooLong, never cut.
func TestConnectRefusesTooLongID(t *testing.T) {
	t.Parallel()
	st, _ := storetest.Open(t, "")
	for name, c := range map[string]store.Connection{
		"location": {LocationID: strings.Repeat("L", store.MaxIDLen+1)},
		"company":  {LocationID: "loc1", CompanyID: strings.Repeat("C", store.MaxIDLen+1)},
	} {
		c.Tokens = store.Tokens{AccessToken: "a", RefreshToken: "r", ExpiresAt: time.Now()}
		err := st.Connect(context.Background(), c)
		if !errors.Is(err, store.ErrTooLong) || !strings.Contains(err.Error(), "256 bytes") {
			t.Errorf("%s id: %v, want ErrTooLong naming the length", name, err)
		}
	}
	if cs, _ := st.Credentials(context.Background()); len(cs) != 0 {
		t.Fatalf("%d credentials stored", len(cs))
	}
}

// An SQLite file in a directory that does not exist: Open says so, where
// SQLite itself says "out of memory (14)".
func TestOpenMissingSQLiteDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir() + "/no/such"
	_, err := store.Open(context.Background(), "sqlite://"+dir+"/ghlsync.db", nil)
	if !errors.Is(err, store.ErrNoDirectory) || !strings.Contains(err.Error(), dir+" of the SQLite file does not exist") {
		t.Fatalf("Open: %v", err)
	}
}
