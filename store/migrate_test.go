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

// credentialBefore is the credentials table as the release before token
// versions and 255-byte ids created it.
type credentialBefore struct {
	LocationID      string    `gorm:"primaryKey;size:64"`
	CompanyID       string    `gorm:"size:64;index"`
	UserType        string    `gorm:"size:16;not null;default:Location"`
	Scopes          string    `gorm:"type:text"`
	AccessTokenEnc  string    `gorm:"type:text;not null"`
	RefreshTokenEnc string    `gorm:"type:text;not null"`
	KeyID           string    `gorm:"size:16"`
	ExpiresAt       time.Time `gorm:"index"`
	RefreshedAt     *time.Time
	Status          string `gorm:"size:16;not null;default:active;index"`
	LastError       string `gorm:"type:text"`
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

func (credentialBefore) TableName() string { return "credentials" }

// A database made by an older release, with 64-character id columns,
// migrates to columns that hold a 255-byte location and company id, and
// keeps the rows it had.
func TestMigrateWidensIDColumns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := storetest.DatabaseURL(t)
	db := storetest.DB(t, dbURL)
	must(t, db.AutoMigrate(&credentialBefore{}))
	now := time.Now().UTC()
	must(t, db.Create(&credentialBefore{LocationID: "old-loc", CompanyID: "comp1", UserType: "Location", AccessTokenEnc: "sealed-a",
		RefreshTokenEnc: "sealed-r", ExpiresAt: now.Add(time.Hour), RefreshedAt: &now, Status: "active", CreatedAt: now, UpdatedAt: now}).Error)
	st, err := store.Open(ctx, dbURL, testenv.Cipher(t, testenv.NewKey(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	must(t, st.Migrate(ctx))
	if c, err := st.Credential(ctx, "old-loc"); err != nil || c.RefreshTokenEnc != "sealed-r" || c.CompanyID != "comp1" {
		t.Fatalf("the row from before the migration: %+v, %v", c, err)
	}
	exp := now.Add(time.Hour)

	long := strings.Repeat("L", store.MaxIDLen)
	company := strings.Repeat("C", store.MaxIDLen)
	connect(t, st, long, company, store.UserTypeLocation, exp)
	c, err := st.Credential(ctx, long)
	must(t, err)
	if toks, err := st.Tokens(c); err != nil || toks.RefreshToken != "rt-"+long {
		t.Errorf("the long location's refresh token: %v", err)
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
