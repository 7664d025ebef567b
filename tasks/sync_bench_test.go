package tasks_test

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/ratelimit"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/syncer"
	"github.com/ghlsync/ghlsync/tasks"
)

// BenchmarkSyncRateLimit syncs three locations of 600 patients each with 1,
// 2 and 4 worker processes while the fake GHL enforces 100 requests per
// 10 s, and prints, per location, the requests per 10 s window (mean and
// most) against the limit, and the 429s.
//
//	go test -run '^$' -bench SyncRateLimit -benchtime 1x ./tasks/
func BenchmarkSyncRateLimit(b *testing.B) {
	for _, workers := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			for range b.N {
				benchmarkSyncRateLimit(b, workers)
			}
		})
	}
}

func benchmarkSyncRateLimit(b *testing.B, workers int) {
	locs := []string{"loc1", "loc2", "loc3"}
	e, rec := setupProcesses(b, ghltest.Options{EnforceRateLimit: true}, 600, 0, locs...)
	for range workers {
		startWorker(b, e, 10)
	}
	_, results := e.syncAll(b, tasks.NewPatientsSyncTask)
	worst, most, limited := 100.0, 0, 0
	for _, loc := range locs {
		if res := results[loc]; res.Created != 600 {
			b.Fatalf("%s: %+v", loc, res)
		}
		r := measure(rec.of(loc), 10*time.Second)
		n := e.Fake.RateLimited(loc)
		fmt.Printf("workers=%d %s: %d requests in %s, %.1f per 10 s on average, at most %d in any 10 s (limit 100), %d answered 429\n",
			workers, loc, r.requests, r.span.Round(time.Millisecond), r.mean, r.max, n)
		worst, most, limited = min(worst, r.mean), max(most, r.max), limited+n
	}
	b.ReportMetric(worst, "req/10s-mean-worst-location")
	b.ReportMetric(float64(most), "req/10s-max")
	b.ReportMetric(float64(limited), "429s")
}

// unlimited grants every call at once.
type unlimited struct{}

func (unlimited) Wait(context.Context, string) (ratelimit.Grant, error) {
	return ratelimit.Grant{}, nil
}
func (unlimited) Observe(context.Context, string, ratelimit.Grant, ratelimit.Rate) error {
	return nil
}
func (unlimited) Pause(context.Context, string, time.Duration) (time.Duration, error) { return 0, nil }

// BenchmarkSyncUnchangedPatients runs a full patient sync over 100,000 patients
// of one location that GHL holds already, and reports the time it takes to
// decide that nothing changed, the GHL calls it made (must be 0), and the
// most memory it held. The patients are first synced for real, without the
// rate limiter.
//
//	go test -run '^$' -bench SyncUnchangedPatients -benchtime 3x ./tasks/
func BenchmarkSyncUnchangedPatients(b *testing.B) {
	const n = 100_000
	e := newSyncEnv(b, ghltest.Options{}, nil, "loc1")
	ps := make([]store.Patient, n)
	for i := range ps {
		ps[i] = patient("loc1", i)
	}
	if err := e.Store.InsertPatients(context.Background(), ps); err != nil {
		b.Fatal(err)
	}
	ps = nil
	ctx := context.Background()
	// The full pass, which reads every row (BenchmarkSyncIncrementalUnchanged
	// has the hourly pass beside it).
	task, _ := tasks.NewSyncTask(tasks.TypePatientsSync, tasks.SyncPayload{LocationID: "loc1", Full: true})

	limiter := e.h.Limiter
	e.h.Limiter, e.h.BatchSize, e.h.Budget, e.h.Concurrency = unlimited{}, n, time.Hour, 32
	start := time.Now()
	if err := e.h.HandlePatientsSync(ctx, task); err != nil {
		b.Fatal(err)
	}
	if got := len(e.Fake.Contacts("loc1")); got != n {
		b.Fatalf("the first sync made %d contacts", got)
	}
	fmt.Printf("first sync of %d patients (no rate limit): %s\n", n, time.Since(start).Round(time.Millisecond))
	e.h.Limiter, e.h.BatchSize, e.h.Budget, e.h.Concurrency = limiter, 0, 0, 0

	calls := e.calls("loc1")
	b.ResetTimer()
	for range b.N {
		if err := e.h.HandlePatientsSync(ctx, task); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	perPass := time.Duration(b.Elapsed().Nanoseconds() / int64(b.N))

	// One more pass measures memory: the live heap after every GC, with a
	// GC every few MB allocated so that the peak of what the pass holds is
	// seen, and the bytes it allocates.
	runtime.GC()
	base, allocs := readHeap()
	old := debug.SetGCPercent(5)
	var peak uint64
	stop := sampleHeap(&peak)
	if err := e.h.HandlePatientsSync(ctx, task); err != nil {
		b.Fatal(err)
	}
	stop()
	debug.SetGCPercent(old)
	_, allocsAfter := readHeap()

	runs, err := e.Store.SyncRuns(ctx, "loc1", syncer.KindPatients, 1)
	if err != nil || len(runs) != 1 || runs[0].Unchanged != n || runs[0].Outcome != syncer.OutcomeCompleted {
		b.Fatalf("last run: %+v, %v", runs, err)
	}
	made := e.calls("loc1") - calls
	fmt.Printf("%d unchanged patients (%s): decided in %s per pass, %d GHL calls; the pass held at most %.1f MB "+
		"of live heap above the %.1f MB before it (the in-process fake GHL included), and allocated %.0f MB in all\n",
		n, backend(e.Store), perPass.Round(time.Millisecond), made, mb(peak-base), mb(base), mb(allocsAfter-allocs))
	b.ReportMetric(float64(made), "ghl-calls")
	b.ReportMetric(mb(peak-base), "peak-live-heap-MB")
	b.ReportMetric(float64(n)/perPass.Seconds(), "patients/s")
	if made != 0 {
		b.Errorf("%d GHL calls for unchanged patients", made)
	}
}

func backend(st *store.Store) string {
	if st.Postgres() {
		return "PostgreSQL"
	}
	return "SQLite"
}

func mb(b uint64) float64 { return float64(b) / (1 << 20) }

var heapSamples = []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/heap/allocs:bytes"}}

// readHeap returns the live heap as of the last GC, and the bytes
// allocated so far.
func readHeap() (live, allocs uint64) {
	metrics.Read(heapSamples)
	return heapSamples[0].Value.Uint64(), heapSamples[1].Value.Uint64()
}

// sampleHeap raises *peak to the live heap every millisecond until stop is
// called.
func sampleHeap(peak *uint64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			live, _ := readHeap()
			*peak = max(*peak, live)
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
