package tasks_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/syncer"
	"github.com/ghlsync/ghlsync/tasks"
)

// BenchmarkSyncUnchangedAppointments runs an appointment sync over 20,000
// appointments (of 2,000 patients) of one location that GHL holds already,
// and reports the time it takes to decide that nothing changed and the GHL
// calls it made (must be 0). Patients and appointments are first synced
// for real, without the rate limiter.
//
//	go test -run '^$' -bench SyncUnchangedAppointments -benchtime 3x ./tasks/
func BenchmarkSyncUnchangedAppointments(b *testing.B) {
	const patients, n = 2_000, 20_000
	e := newSyncEnv(b, ghltest.Options{}, nil, "loc1")
	ctx := context.Background()
	ps := make([]store.Patient, patients)
	for i := range ps {
		ps[i] = patient("loc1", i)
	}
	as := make([]store.Appointment, n)
	for i := range as {
		as[i] = appointment("loc1", i, patients)
	}
	if err := e.Store.InsertPatients(ctx, ps); err != nil {
		b.Fatal(err)
	}
	if err := e.Store.InsertAppointments(ctx, as); err != nil {
		b.Fatal(err)
	}
	task, _ := tasks.NewAppointmentsSyncTask("loc1")
	limiter := e.h.Limiter
	e.h.Limiter, e.h.BatchSize, e.h.Budget, e.h.Concurrency = unlimited{}, n, time.Hour, 32
	start := time.Now()
	if err := e.h.HandleAppointmentsSync(ctx, task); err != nil {
		b.Fatal(err)
	}
	if got := len(e.Fake.Appointments("loc1")); got != n {
		b.Fatalf("the first sync booked %d appointments", got)
	}
	fmt.Printf("first sync of %d appointments (no rate limit): %s\n", n, time.Since(start).Round(time.Millisecond))
	e.h.Limiter, e.h.BatchSize, e.h.Budget, e.h.Concurrency = limiter, 0, 0, 0

	calls := e.calls("loc1")
	b.ResetTimer()
	for range b.N {
		if err := e.h.HandleAppointmentsSync(ctx, task); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	perPass := time.Duration(b.Elapsed().Nanoseconds() / int64(b.N))
	runs, err := e.Store.SyncRuns(ctx, "loc1", syncer.KindAppointments, 1)
	if err != nil || len(runs) != 1 || runs[0].Unchanged != n || runs[0].Outcome != syncer.OutcomeCompleted {
		b.Fatalf("last run: %+v, %v", runs, err)
	}
	made := e.calls("loc1") - calls
	fmt.Printf("%d unchanged appointments (%s): decided in %s per pass, %d GHL calls\n",
		n, backend(e.Store), perPass.Round(time.Millisecond), made)
	b.ReportMetric(float64(made), "ghl-calls")
	b.ReportMetric(float64(n)/perPass.Seconds(), "appointments/s")
	if made != 0 {
		b.Errorf("%d GHL calls for unchanged appointments", made)
	}
}
