package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gorm.io/gorm"

	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
)

// SavePatientSync calls that come while another is being written go to
// the database together, in one statement, and each returns once its own
// state is written; two states of one patient are written in the order
// they were saved.
func TestSavePatientSyncCombinesConcurrentWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var n atomic.Int64
	st, dbURL := storetest.Open(t, "", store.CountStatements(&n))
	// The first write is held until the others are queued behind it.
	held, release := holdFirstWrite(t, store.DBOf(st).Callback().Create().Before("gorm:create"))
	n.Store(0)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	save := func(ext, contact string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- st.SavePatientSync(ctx, &store.PatientSync{LocationID: "loc1", ExternalID: ext, ContactID: contact})
		}()
	}
	queued := func(want int) { t.Helper(); waitQueued(t, func() int { return store.QueuedPatientWrites(st) }, want) }
	save("p-00", "c-00")
	waitHeld(t, held)
	for i := 1; i <= 20; i++ {
		save(fmt.Sprintf("p-%02d", i), fmt.Sprintf("c-%02d", i))
	}
	queued(20)
	save("p-05", "c-05-later")
	queued(21)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		noErr(t, err)
	}
	// The held write, the twenty others, and p-05's later state.
	if got := n.Load(); got != 3 {
		t.Errorf("22 writes took %d statements, want 3", got)
	}
	var rows []struct{ ExternalID, ContactID string }
	noErr(t, storetest.DB(t, dbURL).WithContext(ctx).Raw(`SELECT external_id, contact_id FROM sync_patients
		WHERE location_id = 'loc1' ORDER BY external_id`).Scan(&rows).Error)
	if len(rows) != 21 {
		t.Fatalf("%d states written, want 21", len(rows))
	}
	for i, r := range rows {
		want := fmt.Sprintf("c-%02d", i)
		if i == 5 {
			want = "c-05-later"
		}
		if r.ExternalID != fmt.Sprintf("p-%02d", i) || r.ContactID != want {
			t.Errorf("row %d: %s holds %s, want %s", i, r.ExternalID, r.ContactID, want)
		}
	}
}

// RecordSent calls that come while another is being written are merged
// together in one statement, each record's fields into its own.
func TestRecordSentCombinesConcurrentWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var n atomic.Int64
	st, _ := storetest.Open(t, "", store.CountStatements(&n))
	noErr(t, st.RecordSent(ctx, "loc1", store.RecordContact, "p-03", "c-03", store.FieldHashes{"phone": "f03"}))
	held, release := holdFirstWrite(t, store.DBOf(st).Callback().Raw().Before("gorm:raw"))
	n.Store(0)
	writeBehindHeld(t, held, release, func() int { return store.QueuedSentWrites(st) }, 11, func(i int) error {
		return st.RecordSent(ctx, "loc1", store.RecordContact, fmt.Sprintf("p-%02d", i), "",
			store.FieldHashes{"email": fmt.Sprintf("e%02d", i)})
	})
	if got := n.Load(); got != 2 {
		t.Errorf("11 writes took %d statements, want 2", got)
	}
	for i := range 11 {
		got, err := st.Sent(ctx, "loc1", store.RecordContact, fmt.Sprintf("p-%02d", i))
		noErr(t, err)
		want := store.FieldHashes{"email": fmt.Sprintf("e%02d", i)}
		if i == 3 {
			want["phone"] = "f03"
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("p-%02d (-want +got):\n%s", i, diff)
		}
	}
}

// A combined write holds at most 500 rows, within what one statement may
// bind; the rest go in the next.
func TestSavePatientSyncBatchesAreBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var n atomic.Int64
	st, _ := storetest.Open(t, "", store.CountStatements(&n))
	held, release := holdFirstWrite(t, store.DBOf(st).Callback().Create().Before("gorm:create"))
	n.Store(0)
	writeBehindHeld(t, held, release, func() int { return store.QueuedPatientWrites(st) }, 602, func(i int) error {
		return st.SavePatientSync(ctx, &store.PatientSync{LocationID: "loc1", ExternalID: fmt.Sprintf("p-%04d", i)})
	})
	// The held write, then 500 and 101.
	if got := n.Load(); got != 3 {
		t.Errorf("602 writes took %d statements, want 3", got)
	}
}

// writeBehindHeld calls write(0) and, once holdFirstWrite holds it,
// write(1) to write(n-1), each on its own goroutine; when queued says
// those n-1 wait behind the held one, it lets the held one go, waits for
// every write and fails t on any error.
func writeBehindHeld(t *testing.T, held, release chan struct{}, queued func() int, n int, write func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() { errs <- write(i) })
		if i == 0 {
			waitHeld(t, held)
		}
	}
	waitQueued(t, queued, n-1)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		noErr(t, err)
	}
}

// holdFirstWrite registers a callback at at that holds the first
// statement it sees until release is closed; held is closed as it starts.
func holdFirstWrite(t *testing.T, at interface {
	Register(string, func(*gorm.DB)) error
}) (held, release chan struct{}) {
	t.Helper()
	held, release = make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	noErr(t, at.Register("test:hold", func(*gorm.DB) {
		if first.CompareAndSwap(false, true) {
			close(held)
			<-release
		}
	}))
	return held, release
}

// waitHeld waits for holdFirstWrite's write to start.
func waitHeld(t *testing.T, held <-chan struct{}) {
	t.Helper()
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the first write did not start")
	}
}

// waitQueued waits until queued says want writes wait behind the held one.
func waitQueued(t *testing.T, queued func() int, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for queued() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued, want %d", queued(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// On PostgreSQL, SaveRefreshedLogged calls that come while another is
// being written share one statement, and each gets what it would alone:
// its token, status and history entry stored, or ErrStale for a token
// that a newer one replaced, or ErrNotFound for an uninstalled location,
// with nothing stored.
func TestSaveRefreshedLoggedCombinesConcurrentWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var n atomic.Int64
	st, _ := storetest.Open(t, "", store.CountStatements(&n))
	if !st.Postgres() {
		t.Skip("refresh writes are combined on PostgreSQL (TEST_DATABASE_URL) only")
	}
	exp := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second)
	at := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	status := map[string]store.Status{"held": store.StatusActive, "stale": store.StatusActive,
		"inactive": store.StatusInactive, "missing": store.StatusMissingScope, "gone": store.StatusUninstalled}
	for i := range 6 {
		status[fmt.Sprintf("loc%d", i)] = store.StatusActive
	}
	for loc, s := range status {
		noErr(t, st.Connect(ctx, store.Connection{LocationID: loc, UserType: store.UserTypeLocation,
			Tokens: store.Tokens{AccessToken: "at-" + loc, RefreshToken: "rt-" + loc, ExpiresAt: time.Now().Add(time.Hour)}}))
		if s != store.StatusActive {
			noErr(t, st.SetStatus(ctx, loc, s, "was "+string(s)))
		}
	}
	held, release := holdFirstWrite(t, store.DBOf(st).Callback().Row().Before("gorm:row"))
	n.Store(0)
	errs := make(map[string]error)
	var mu sync.Mutex
	var wg sync.WaitGroup
	save := func(loc string) {
		spent := int64(1)
		if loc == "stale" {
			spent = 0 // a token that Connect's replaced
		}
		wg.Go(func() {
			err := st.SaveRefreshedLogged(ctx, loc, spent, store.Tokens{AccessToken: "at2-" + loc, RefreshToken: "rt2-" + loc, ExpiresAt: exp}, at,
				&store.RefreshRun{LocationID: loc, At: at, Outcome: "refreshed", ExpiresAt: &exp})
			mu.Lock()
			errs[loc] = err
			mu.Unlock()
		})
	}
	save("held")
	waitHeld(t, held)
	for loc := range status {
		if loc != "held" {
			save(loc)
		}
	}
	waitQueued(t, func() int { return store.QueuedRefreshWrites(st) }, len(status)-1)
	close(release)
	wg.Wait()
	// The held write; the other ten together; stale and gone again on
	// their own, each with the read that tells why it was not written.
	if got := n.Load(); got != 6 {
		t.Errorf("11 writes took %d statements, want 6", got)
	}
	for loc, was := range status {
		err := errs[loc]
		c, cerr := st.Credential(ctx, loc)
		noErr(t, cerr)
		runs, rerr := st.RefreshRuns(ctx, loc, 10)
		noErr(t, rerr)
		toks, terr := st.Tokens(c)
		noErr(t, terr)
		switch loc {
		case "stale", "gone":
			want := store.ErrStale
			if loc == "gone" {
				want = store.ErrNotFound
			}
			if !errors.Is(err, want) || c.TokenVersion != 1 || len(runs) != 0 || toks.RefreshToken != "rt-"+loc {
				t.Errorf("%s: err %v, version %d, %d entries, token %s; want %v and nothing stored", loc, err, c.TokenVersion, len(runs), toks.RefreshToken, want)
			}
			continue
		}
		wantStatus, wantError := store.StatusActive, ""
		if was == store.StatusMissingScope {
			wantStatus, wantError = was, "was "+string(was)
		}
		if err != nil || c.TokenVersion != 2 || c.Status != wantStatus || c.LastError != wantError ||
			!c.ExpiresAt.Equal(exp) || c.RefreshedAt == nil || !c.RefreshedAt.Equal(at) || toks.RefreshToken != "rt2-"+loc {
			t.Errorf("%s: err %v, version %d, status %s (%q), expires %s, refreshed %v, token %s; want version 2, %s (%q), the new token",
				loc, err, c.TokenVersion, c.Status, c.LastError, c.ExpiresAt, c.RefreshedAt, toks.RefreshToken, wantStatus, wantError)
		}
		if len(runs) != 1 || runs[0].Outcome != "refreshed" || !runs[0].At.Equal(at) || runs[0].ExpiresAt == nil || !runs[0].ExpiresAt.Equal(exp) {
			t.Errorf("%s: entries %+v, want one refreshed at %s", loc, runs, at)
		}
	}
}
