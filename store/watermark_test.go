package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/store/storetest"
)

// The migrations create the indexes an incremental read uses, and a read
// of the rows changed since a time sees a row whatever form the clinic
// system wrote its updated_at in (on SQLite: CURRENT_TIMESTAMP's, with a
// T, with an offset), and no row changed before.
func TestChangedRowsAreReadByTheirUpdatedAt(t *testing.T) {
	t.Parallel()
	st, dbURL := storetest.Open(t, "")
	db := storetest.DB(t, dbURL)
	ctx := context.Background()
	for _, ix := range []string{"patients_location_updated", "appointments_location_updated"} {
		var n int64
		q := `SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = ?`
		if st.Postgres() {
			q = `SELECT COUNT(*) FROM pg_indexes WHERE schemaname = current_schema() AND indexname = ?`
		}
		if err := db.Raw(q, ix).Scan(&n).Error; err != nil || n != 1 {
			t.Errorf("index %s: %d, %v; want the migration's", ix, n, err)
		}
	}

	now, err := st.DatabaseNow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(now); d < -time.Minute || d > time.Minute {
		t.Errorf("the database's clock says %s, %s from this machine's", now, d)
	}
	since := now.Add(-10 * time.Minute)
	insert := `INSERT INTO patients (location_id, external_id, first_name, updated_at) VALUES ('loc1', ?, 'x', ?)`
	rows := map[string]any{
		"old":        now.Add(-time.Hour).UTC(),
		"just-older": now.Add(-10*time.Minute - time.Second).UTC(),
		"typed":      now.Add(-5 * time.Minute).UTC(),
		"offset":     now.Add(-5 * time.Minute).In(time.FixedZone("", 3600)).Format("2006-01-02T15:04:05-07:00"),
	}
	if !st.Postgres() {
		rows["text"] = now.Add(-5 * time.Minute).UTC().Format("2006-01-02 15:04:05")
	}
	for id, at := range rows {
		if err := db.Exec(insert, id, at).Error; err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Exec(`INSERT INTO patients (location_id, external_id, first_name) VALUES ('loc1', 'default', 'x')`).Error; err != nil {
		t.Fatal(err)
	}
	page, err := st.PatientPageSince(ctx, "loc1", "", &since, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range page {
		got = append(got, p.ExternalID)
	}
	want := []string{"default", "offset", "typed"}
	if !st.Postgres() {
		want = []string{"default", "offset", "text", "typed"}
	}
	if !slices.Equal(got, want) {
		t.Errorf("rows changed since %s: %v, want %v", since, got, want)
	}
	all, err := st.PatientPageSince(ctx, "loc1", "", nil, 100)
	if err != nil || len(all) != len(rows)+1 {
		t.Errorf("every row: %d, %v", len(all), err)
	}
}

// A watermark moves only forward, and is kept per location and kind.
func TestWatermarkMovesOnlyForward(t *testing.T) {
	t.Parallel()
	st, _ := storetest.Open(t, "")
	ctx := context.Background()
	if _, ok, err := st.Watermark(ctx, "loc1", "patients"); ok || err != nil {
		t.Fatalf("a new location's watermark: %v, %v; want none", ok, err)
	}
	t1 := time.Date(2026, 12, 1, 9, 0, 0, 123_000_000, time.UTC)
	for _, at := range []time.Time{t1, t1.Add(-time.Hour)} {
		if err := st.AdvanceWatermark(ctx, "loc1", "patients", at); err != nil {
			t.Fatal(err)
		}
	}
	if w, ok, err := st.Watermark(ctx, "loc1", "patients"); !ok || err != nil || !w.Equal(t1) {
		t.Errorf("watermark %s, %v, %v; want %s: an earlier time does not move it back", w, ok, err, t1)
	}
	if err := st.AdvanceWatermark(ctx, "loc1", "patients", t1.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if w, _, _ := st.Watermark(ctx, "loc1", "patients"); !w.Equal(t1.Add(time.Minute)) {
		t.Errorf("watermark %s, want %s", w, t1.Add(time.Minute))
	}
	if _, ok, _ := st.Watermark(ctx, "loc1", "appointments"); ok {
		t.Error("the patients' watermark also holds for appointments")
	}
}
