package tasks_test

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/syncer"
	"github.com/ghlsync/ghlsync/tasks"
)

// seedUnchanged gives loc n patients that GHL holds and the clinic last
// changed an hour ago, before the last pass's overlap. Sending 100,000
// contacts through the fake takes too long on a busy machine, so one
// patient is synced for real, and the others are copies of its row and of
// its sync state, made by one INSERT ... SELECT over a recursive CTE (on
// PostgreSQL and SQLite alike), each with its own external id and contact
// id: every row is read and hashed by a full pass as any other, and
// hashes as the one GHL accepted.
func (e *syncEnv) seedUnchanged(b *testing.B, loc string, n int) {
	b.Helper()
	start := time.Now()
	tmpl := patient(loc, 1)
	tmpl.ExternalID = "p-1000000"
	if err := e.Store.InsertPatients(context.Background(), []store.Patient{tmpl}); err != nil {
		b.Fatal(err)
	}
	task, _ := tasks.NewSyncTask(tasks.TypePatientsSync, tasks.SyncPayload{LocationID: loc})
	if err := e.h.HandlePatientsSync(context.Background(), task); err != nil {
		b.Fatal(err)
	}
	e.age(b, "patients", loc)
	e.exec(b, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
		INSERT INTO patients (location_id, external_id, first_name, last_name, email, phone, date_of_birth,
			address1, city, postal_code, country, updated_at)
		SELECT p.location_id, 'p-' || (1000000 + n.i), p.first_name, p.last_name, p.email, p.phone, p.date_of_birth,
			p.address1, p.city, p.postal_code, p.country, p.updated_at
		FROM patients p, n WHERE p.location_id = ? AND p.external_id = ?`, n-1, loc, tmpl.ExternalID)
	e.exec(b, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
		INSERT INTO sync_patients (location_id, external_id, contact_id, sent_hash, sent_at, failed_hash, last_error, updated_at)
		SELECT s.location_id, 'p-' || (1000000 + n.i), s.contact_id || '-' || n.i, s.sent_hash, s.sent_at, s.failed_hash, s.last_error, s.updated_at
		FROM sync_patients s, n WHERE s.location_id = ? AND s.external_id = ?`, n-1, loc, tmpl.ExternalID)
	if e.Store.Postgres() {
		// Statistics, as autovacuum keeps them: without any, PostgreSQL's
		// planner sorts the whole location for each page of a full pass.
		e.exec(b, `ANALYZE patients`)
		e.exec(b, `ANALYZE sync_patients`)
	}
	if got, err := e.Store.CountPatients(context.Background()); err != nil || got < int64(n) {
		b.Fatalf("%d patients after seeding, %v", got, err)
	}
	fmt.Printf("seeded %d unchanged patients of %s: %s\n", n, loc, time.Since(start).Round(time.Millisecond))
}

// BenchmarkSyncIncrementalUnchanged runs the hourly (incremental) pass and
// the nightly full pass over 100,000 patients of one location that GHL
// holds already and the clinic has not changed since the last pass, and
// prints the time each takes to decide that nothing changed, their GHL
// calls (0 each) and the full pass's time over the incremental one's.
//
//	go test -run '^$' -bench SyncIncrementalUnchanged -benchtime 20x ./tasks/
//	TEST_DATABASE_URL=postgres://… go test -run '^$' -bench SyncIncrementalUnchanged -benchtime 20x ./tasks/
func BenchmarkSyncIncrementalUnchanged(b *testing.B) {
	const n = 100_000
	e := newSyncEnv(b, ghltest.Options{}, nil, "loc1")
	e.seedUnchanged(b, "loc1", n)
	ctx := context.Background()

	per := map[string]time.Duration{}
	for _, mode := range []struct {
		name string
		p    tasks.SyncPayload
		read string
	}{
		{"incremental", tasks.SyncPayload{LocationID: "loc1"}, syncer.ReadChanged},
		{"full", tasks.SyncPayload{LocationID: "loc1", Full: true}, syncer.ReadFull},
	} {
		b.Run(mode.name, func(b *testing.B) {
			task, err := tasks.NewSyncTask(tasks.TypePatientsSync, mode.p)
			if err != nil {
				b.Fatal(err)
			}
			calls := e.calls("loc1")
			b.ResetTimer()
			for range b.N {
				if err := e.h.HandlePatientsSync(ctx, task); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			per[mode.name] = time.Duration(b.Elapsed().Nanoseconds() / int64(b.N))
			made := e.calls("loc1") - calls
			runs, err := e.Store.SyncRuns(ctx, "loc1", syncer.KindPatients, 1)
			if err != nil || len(runs) != 1 || runs[0].Outcome != syncer.OutcomeCompleted || runs[0].Created+runs[0].Updated != 0 {
				b.Fatalf("last run: %+v, %v", runs, err)
			}
			fmt.Printf("%d unchanged patients (%s), %s pass: decided in %s per pass (%d passes), %d rows read, %d GHL calls\n",
				n, backend(e.Store), mode.name, per[mode.name].Round(10*time.Microsecond), b.N, runs[0].Scanned, made)
			b.ReportMetric(float64(made), "ghl-calls")
			b.ReportMetric(float64(runs[0].Scanned), "rows-read")
			if made != 0 {
				b.Errorf("%d GHL calls for unchanged patients", made)
			}
		})
	}
	if inc, full := per["incremental"], per["full"]; inc > 0 && full > 0 {
		fmt.Printf("%d unchanged patients (%s): full pass %s / incremental pass %s = %.0f\n",
			n, backend(e.Store), full.Round(time.Millisecond), inc.Round(10*time.Microsecond), float64(full)/float64(inc))
	}
}

// cpuTime is the CPU time, user and system, the process has used so far.
func cpuTime(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSyncHourlyRound runs the hourly patient sync round (the
// schedule's fan-out task and one task per location, through asynq and an
// in-process worker) over 500 locations of 2,000 patients each that GHL
// holds and the clinic has not changed since their last pass, and prints
// the CPU time the process spent on the round (getrusage, user + system:
// the worker, the in-process SQLite or miniredis when they are used, and
// the test's waiting; not a PostgreSQL or Redis server's) and its wall
// time.
//
// One location is seeded as BenchmarkSyncIncrementalUnchanged seeds its
// location; the 499 others get copies of its rows, sync state and
// watermark with plain INSERT ... SELECT. Their passes read no row (none
// changed), so that the copied state was hashed for another location plays
// no part in the cost.
//
//	go test -run '^$' -bench SyncHourlyRound -benchtime 3x ./tasks/
//	TEST_DATABASE_URL=postgres://… TEST_REDIS_URL=redis://… go test -run '^$' -bench SyncHourlyRound -benchtime 3x ./tasks/
func BenchmarkSyncHourlyRound(b *testing.B) {
	const locations, patients = 500, 2000
	locs := make([]string, locations)
	for i := range locs {
		locs[i] = fmt.Sprintf("loc%03d", i)
	}
	e := setupSync(b, ghltest.Options{}, nil, locs...)
	e.seedUnchanged(b, locs[0], patients)
	start := time.Now()
	for _, loc := range locs[1:] {
		e.exec(b, `INSERT INTO patients (location_id, external_id, first_name, last_name, email, phone, date_of_birth,
				address1, city, postal_code, country, updated_at)
			SELECT ?, external_id, first_name, last_name, email, phone, date_of_birth, address1, city, postal_code, country, updated_at
			FROM patients WHERE location_id = ?`, loc, locs[0])
		e.exec(b, `INSERT INTO sync_patients (location_id, external_id, contact_id, sent_hash, sent_at, failed_hash, last_error, updated_at)
			SELECT ?, external_id, contact_id, sent_hash, sent_at, failed_hash, last_error, updated_at
			FROM sync_patients WHERE location_id = ?`, loc, locs[0])
		e.exec(b, `INSERT INTO sync_watermarks (location_id, kind, watermark, updated_at)
			SELECT ?, kind, watermark, updated_at FROM sync_watermarks WHERE location_id = ?`, loc, locs[0])
	}
	if e.Store.Postgres() {
		e.exec(b, `ANALYZE patients`)
		e.exec(b, `ANALYZE sync_patients`)
	}
	fmt.Printf("copied %d locations of %d patients: %s\n", locations-1, patients, time.Since(start).Round(time.Millisecond))

	calls := 0
	for _, loc := range locs {
		calls += e.calls(loc)
	}
	b.ResetTimer()
	var cpu, wall time.Duration
	for range b.N {
		cpu0, wall0 := cpuTime(b), time.Now()
		fan, results := e.syncAll(b, tasks.NewPatientsSyncTask)
		cpu, wall = cpu+cpuTime(b)-cpu0, wall+time.Since(wall0)
		if len(fan.Enqueued) != locations || len(results) != locations {
			b.Fatalf("round: %d tasks enqueued, %d results", len(fan.Enqueued), len(results))
		}
		for loc, res := range results {
			if res.Outcome != syncer.OutcomeCompleted || res.Read != syncer.ReadChanged || res.Scanned != 0 {
				b.Fatalf("%s: %+v, want an incremental pass that read nothing", loc, res)
			}
		}
	}
	b.StopTimer()
	made := -calls
	for _, loc := range locs {
		made += e.calls(loc)
	}
	perRound := cpu / time.Duration(b.N)
	fmt.Printf("hourly round over %d locations × %d unchanged patients (%s, %s): %s of CPU per round (%.2f of the 5 s budget), "+
		"%s wall, %d GHL calls, %d rounds\n", locations, patients, backend(e.Store), redisKind(), perRound.Round(time.Millisecond),
		perRound.Seconds()/5, (wall / time.Duration(b.N)).Round(time.Millisecond), made, b.N)
	b.ReportMetric(perRound.Seconds(), "cpu-s/round")
	b.ReportMetric(float64(made), "ghl-calls")
	if made != 0 {
		b.Errorf("%d GHL calls for unchanged patients", made)
	}
}

// redisKind names the Redis the test runs on.
func redisKind() string {
	if os.Getenv("TEST_REDIS_URL") != "" {
		return "Redis"
	}
	return "miniredis"
}
