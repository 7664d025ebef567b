package app_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/tasks"
)

// BenchmarkAtLimits syncs 200 locations of 300 new patients each, plus a
// large one (600 patients, enqueued first) and a small one (30, enqueued
// last), with 2 workers (in-process, each app.Open and app.RunWorker with
// the default settings) while the fake GHL enforces 100 requests per 10 s
// per location and answers every request after 50 ms. Real time.
//
//   - of-limits: how close the 200 came to the fastest GHL's limits allow
//     them: a location's request k (from 0) is accepted no sooner than
//     10 s × ⌊k/100⌋ after its first, so the 200 with N requests at most
//     (every call the fake accepted, the custom field's list and create
//     too) need at least 10 s × ⌊(N-1)/100⌋ from the first request of any
//     of them to the last; the figure is that over the span they took (1:
//     every location at its limit from the start). Printed beside it: the
//     contacts per second over the limits' sum (200 × 10/s), all of them
//     and those beyond each location's first 100; neither is the figure,
//     since a location's last window may be a part one (300 patients and
//     2 setup calls need 30 s, where 300 alone need 20);
//
//   - small-before-large: 1 when the small location, enqueued last,
//     finished before the large one, enqueued first;
//
//   - 429s: the fake's 429 answers.
//
//     go test -run '^$' -bench 'AtLimits$' -benchtime 1x -timeout 20m ./app/
func BenchmarkAtLimits(b *testing.B) {
	sizes := []locSize{{"large", 600}}
	for i := range 200 {
		sizes = append(sizes, locSize{fmt.Sprintf("loc%03d", i), 300})
	}
	sizes = append(sizes, locSize{"small", 30})
	for range b.N {
		r := runAtLimits(b, sizes, 50*time.Millisecond, true)
		var contacts, beyond, most int
		first, last := time.Time{}, time.Time{}
		for _, s := range sizes[1 : len(sizes)-1] {
			p := r.progress[s.loc]
			contacts += s.patients
			beyond += s.patients - 100
			most = max(most, p.requests)
			if first.IsZero() || p.firstRequest.Before(first) {
				first = p.firstRequest
			}
			last = later(last, later(p.lastRequest, p.done))
		}
		span := last.Sub(first)
		fastest := time.Duration((most-1)/100) * 10 * time.Second
		limits := float64(len(sizes)-2) * 10
		small, large := r.progress["small"], r.progress["large"]
		fair := 0.0
		if small.done.Before(large.done) {
			fair = 1
		}
		fmt.Printf("200 locations × 300 patients, 2 workers: up to %d requests each, done in %s where the limits allow %s: %.3f of the limits; "+
			"contacts per second over the limits' %.0f/s: all %.3f, beyond the first 100 of each %.3f; %d answered 429; "+
			"small (30, enqueued last) done %s after the start, large (600, enqueued first) %s: small before large %v\n",
			most, span.Round(time.Millisecond), fastest, fastest.Seconds()/span.Seconds(), limits,
			float64(contacts)/span.Seconds()/limits, float64(beyond)/span.Seconds()/limits, r.limited,
			small.done.Sub(r.start).Round(time.Millisecond), large.done.Sub(r.start).Round(time.Millisecond), fair == 1)
		b.ReportMetric(fastest.Seconds()/span.Seconds(), "of-limits")
		b.ReportMetric(fair, "small-before-large")
		b.ReportMetric(float64(r.limited), "429s")
	}
}

// BenchmarkLimiterAtLimit keeps 40 locations at their limit for about 2
// minutes (1,300 new patients each) with 2 workers, as BenchmarkAtLimits
// does, and counts, per location, the GHL requests the fake accepted
// (every call of the sync, not only the contact writes) from the first to
// the last. It reports:
//
//   - worst-of-limit, mean-of-limit: how close each location came to the
//     fastest its limit allows for the requests it made: GHL's sliding
//     window of 100 per 10 s lets a location's request k (from 0) be
//     accepted no sooner than 10 s × ⌊k/100⌋ after its first, so N
//     requests need at least 10 s × ⌊(N-1)/100⌋ from the first to the
//     last; the figure is that over the span they took (1: at the limit
//     throughout). The simpler "requests beyond the first 100 per second
//     over 10/s" is printed too; it is not the figure, since no client
//     can reach 1 on it: a location's last window is a part one (N = 1,313
//     requests need 130 s, 1,213 beyond the first 100 in 130 s: 0.933 at
//     best);
//
//   - max-per-window: the most the fake counted in one of its windows for
//     any location (≤ 100);
//
//   - 429s: the fake's 429 answers.
//
//     go test -run '^$' -bench LimiterAtLimit -benchtime 1x -timeout 20m ./app/
func BenchmarkLimiterAtLimit(b *testing.B) {
	var sizes []locSize
	for i := range 40 {
		sizes = append(sizes, locSize{fmt.Sprintf("loc%02d", i), 1300})
	}
	for range b.N {
		r := runAtLimits(b, sizes, 50*time.Millisecond, true)
		worst, mean, naive, most := 1e9, 0.0, 1e9, 0
		var span time.Duration
		for _, s := range sizes {
			p := r.progress[s.loc]
			d := p.lastRequest.Sub(p.firstRequest)
			fastest := time.Duration((p.requests-1)/100) * 10 * time.Second
			of := fastest.Seconds() / d.Seconds()
			worst, mean = min(worst, of), mean+of/float64(len(sizes))
			naive = min(naive, float64(p.requests-100)/d.Seconds()/10)
			most = max(most, r.fake.MaxInWindow(s.loc))
			span = max(span, d)
		}
		fmt.Printf("40 locations × 1,300 patients, 2 workers, up to %s each: of the fastest the limit allows: worst %.3f, mean %.3f "+
			"(beyond the first 100 over 10/s: worst %.3f); at most %d in one of the fake's windows; %d answered 429\n",
			span.Round(time.Millisecond), worst, mean, naive, most, r.limited)
		b.ReportMetric(worst, "worst-of-limit")
		b.ReportMetric(mean, "mean-of-limit")
		b.ReportMetric(float64(most), "max-per-window")
		b.ReportMetric(float64(r.limited), "429s")
	}
}

type locSize struct {
	loc      string
	patients int
}

// locProgress is when the fake accepted a location's first contact and
// its last (to within the sampling's 20 ms), and, when counted, its API
// requests accepted, and when the first and the last came.
type locProgress struct {
	first, done               time.Time
	requests                  int
	firstRequest, lastRequest time.Time
}

type limitsRun struct {
	fake     *ghltest.Server
	start    time.Time
	progress map[string]locProgress
	limited  int
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// runAtLimits seeds the locations, enqueues their patient syncs in order,
// starts 2 workers with the default settings and samples the fake's
// counts until every location's patients are contacts; with requests, the
// API requests the fake accepted too.
func runAtLimits(b *testing.B, sizes []locSize, latency time.Duration, requests bool) limitsRun {
	b.StopTimer()
	stack := storetest.NewStack(b, ghltest.Options{EnforceRateLimit: true})
	stack.Fake.InjectFault(ghltest.Fault{Latency: latency})
	ctx := context.Background()
	seedStart := time.Now()
	total := 0
	for _, s := range sizes {
		stack.Connect(b, s.loc, time.Now().Add(24*time.Hour))
		ps := make([]store.Patient, s.patients)
		for j := range ps {
			ps[j] = store.Patient{LocationID: s.loc, ExternalID: fmt.Sprintf("p-%05d", j),
				FirstName: fmt.Sprintf("First%d", j), LastName: "Last-" + s.loc,
				Email: fmt.Sprintf("p%d.%s@example.com", j, s.loc), City: "Springfield", Country: "US"}
		}
		if err := stack.Store.InsertPatients(ctx, ps); err != nil {
			b.Fatal(err)
		}
		total += s.patients
	}
	fmt.Printf("seeded %d locations, %d patients (%s) in %s\n", len(sizes), total, backend(stack.Store),
		time.Since(seedStart).Round(time.Millisecond))

	cfg, err := config.NewLoader(flag.NewFlagSet("w", flag.ContinueOnError), testenv.Getenv(stack.Env()), "").Load()
	if err != nil {
		b.Fatal(err)
	}
	cfg.MetricsAddr = ""
	opt, err := asynq.ParseRedisURI(stack.RedisURL)
	if err != nil {
		b.Fatal(err)
	}
	client := asynq.NewClient(opt)
	defer client.Close()
	for _, s := range sizes {
		task, _ := tasks.NewPatientsSyncTask(s.loc)
		if _, err := client.Enqueue(task); err != nil {
			b.Fatal(err)
		}
	}

	workerCtx, stopWorkers := context.WithCancel(ctx)
	const workers = 2
	// Both workers are opened before either runs, and the sampling starts
	// as the first one does: opening one takes about a second, and
	// requests sent meanwhile would go unseen, a span shorter than it was.
	var deps []*app.Deps
	for range workers {
		d, err := app.Open(workerCtx, cfg, app.NewLogger(io.Discard, cfg.LogLevel), true, app.RedisPool(app.WorkerOptions{}.RedisPool()))
		if err != nil {
			stopWorkers()
			for _, d := range deps {
				d.Close()
			}
			b.Fatal(err)
		}
		deps = append(deps, d)
	}
	exited := make(chan error, workers)
	defer func() {
		stopWorkers()
		for range workers {
			if err := <-exited; err != nil {
				b.Errorf("worker: %v", err)
			}
		}
	}()
	r := limitsRun{fake: stack.Fake, start: time.Now(), progress: map[string]locProgress{}}
	b.StartTimer()
	for _, d := range deps {
		go func() {
			err := app.RunWorker(workerCtx, d, app.WorkerOptions{})
			d.Close()
			exited <- err
		}()
	}
	deadline := time.Now().Add(15 * time.Minute)
	for len(r.progress) < len(sizes) || slices.ContainsFunc(sizes, func(s locSize) bool { return r.progress[s.loc].done.IsZero() }) {
		if time.Now().After(deadline) {
			b.Fatalf("not synced after 15 minutes: %+v", r.progress)
		}
		time.Sleep(20 * time.Millisecond)
		st, now := stack.Fake.Stats(), time.Now()
		for _, s := range sizes {
			n := st.ContactCreates[s.loc] + st.ContactUpdates[s.loc]
			p := r.progress[s.loc]
			if n > 0 && p.first.IsZero() {
				p.first = now
			}
			if n >= s.patients && p.done.IsZero() {
				p.done = now
			}
			if requests {
				if accepted := st.Accepted[s.loc]; accepted > p.requests {
					if p.requests == 0 {
						p.firstRequest = now
					}
					p.requests, p.lastRequest = accepted, now
				}
			}
			r.progress[s.loc] = p
		}
	}
	b.StopTimer()
	r.limited = sum(stack.Fake.Stats().RateLimited)
	return r
}
