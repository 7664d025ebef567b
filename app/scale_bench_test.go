package app_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
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

// BenchmarkScaleOut syncs 200 connected locations of 400 new patients each
// while the fake GHL enforces its limit (100 requests per 10 s per
// location) and answers every request after 30 ms, with workers added one
// at a time, 1 to 4: in-process, each app.Open and app.RunWorker at the
// default concurrency, on one Redis and database. After each addition it
// waits a warm-up (3 s), then counts over a window (30 s) what the fake
// accepted. The limiter grants a location its 100 requests at once, then
// nothing until they age out of its 10.25 s window, so a window much
// shorter than three of those would measure the bursts' phase more than
// the rate; the warm-up leaves out the new worker's first bursts. It
// reports per worker count:
//
//   - req/s-Nw: contact writes the fake accepted per second (the only API
//     call a patient sync of new patients makes), and of-limit-Nw: that
//     over the sum of the locations' limits (200 × 10/s);
//   - first-task-ms-Nw: from the new worker's app.Open to the start of its
//     first sync task, as asynq's own record of it says (WorkerInfo.Started,
//     which the server's heartbeat publishes every 5 s: a sync task of 400
//     patients runs for half a minute, so the first is still there);
//   - 429s: the fake's 429 answers over the whole run.
//
// Sizes (all optional): GHLSYNC_SCALE_LOCATIONS, GHLSYNC_SCALE_PATIENTS,
// GHLSYNC_SCALE_WORKERS, and as Go durations GHLSYNC_SCALE_LATENCY,
// GHLSYNC_SCALE_WARMUP and GHLSYNC_SCALE_WINDOW. On
// PostgreSQL and Redis add the TEST_* variables ("Tests" in the README).
//
//	go test -run '^$' -bench ScaleOut -benchtime 1x -timeout 15m ./app/
func BenchmarkScaleOut(b *testing.B) {
	sz := scaleSizes(b)
	for range b.N {
		benchmarkScaleOut(b, sz)
	}
}

type scaleSize struct {
	locations, patients, workers int
	latency, warmup, window      time.Duration
}

func scaleSizes(b *testing.B) scaleSize {
	sz := scaleSize{locations: 200, patients: 400, workers: 4,
		latency: 30 * time.Millisecond, warmup: 3 * time.Second, window: 30 * time.Second}
	for name, p := range map[string]*int{"GHLSYNC_SCALE_LOCATIONS": &sz.locations,
		"GHLSYNC_SCALE_PATIENTS": &sz.patients, "GHLSYNC_SCALE_WORKERS": &sz.workers} {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				b.Fatalf("%s=%q: want a positive number", name, v)
			}
			*p = n
		}
	}
	for name, p := range map[string]*time.Duration{"GHLSYNC_SCALE_LATENCY": &sz.latency,
		"GHLSYNC_SCALE_WARMUP": &sz.warmup, "GHLSYNC_SCALE_WINDOW": &sz.window} {
		if v := os.Getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || (d == 0 && p == &sz.window) {
				b.Fatalf("%s=%q: want a duration such as 30s", name, v)
			}
			*p = d
		}
	}
	return sz
}

// scaleCount is what the fake had counted at a moment.
type scaleCount struct {
	at time.Time
	// writes are the contact creates and updates the fake accepted, by
	// location; limited its 429 answers, all locations together.
	writes  map[string]int
	limited int
}

func countFake(f *ghltest.Server) scaleCount {
	st := f.Stats()
	c := scaleCount{at: time.Now(), writes: st.ContactCreates, limited: sum(st.RateLimited)}
	for loc, n := range st.ContactUpdates {
		c.writes[loc] += n
	}
	return c
}

// since returns the writes from c0 to c, and how many locations made any.
func (c scaleCount) since(c0 scaleCount) (writes, locations int) {
	for loc, n := range c.writes {
		if d := n - c0.writes[loc]; d > 0 {
			writes += d
			locations++
		}
	}
	return writes, locations
}

// scaleStage is what was measured after the nth worker's start.
type scaleStage struct {
	open time.Duration
	// firstTask is 0 when the worker took no sync task (none was left).
	firstTask    time.Duration
	writes, locs int
	span         time.Duration
	limited      int
	// running is how many sync tasks asynq's heartbeats listed as running
	// at the window's end.
	running int
}

func benchmarkScaleOut(b *testing.B, sz scaleSize) {
	b.StopTimer()
	stack := storetest.NewStack(b, ghltest.Options{EnforceRateLimit: true})
	stack.Fake.InjectFault(ghltest.Fault{Latency: sz.latency})
	ctx := context.Background()
	locs := make([]string, sz.locations)
	seedStart := time.Now()
	ps := make([]store.Patient, sz.patients)
	for i := range locs {
		locs[i] = fmt.Sprintf("loc%04d", i)
		stack.Connect(b, locs[i], time.Now().Add(24*time.Hour))
		for j := range ps {
			ps[j] = store.Patient{LocationID: locs[i], ExternalID: fmt.Sprintf("p-%05d", j),
				FirstName: fmt.Sprintf("First%d", j), LastName: "Last-" + locs[i],
				Email: fmt.Sprintf("p%d.%s@example.com", j, locs[i]), City: "Springfield", Country: "US"}
		}
		if err := stack.Store.InsertPatients(ctx, ps); err != nil {
			b.Fatal(err)
		}
	}
	fmt.Printf("seeded %d locations × %d patients (%s) in %s\n", sz.locations, sz.patients,
		backend(stack.Store), time.Since(seedStart).Round(time.Millisecond))

	cfg, err := config.NewLoader(flag.NewFlagSet("w", flag.ContinueOnError), testenv.Getenv(stack.Env()), "").Load()
	if err != nil {
		b.Fatal(err)
	}
	cfg.MetricsAddr = ""
	opt, err := asynq.ParseRedisURI(stack.RedisURL)
	if err != nil {
		b.Fatal(err)
	}
	client, insp := asynq.NewClient(opt), asynq.NewInspector(opt)
	defer client.Close()
	defer insp.Close()
	// Every location's sync is pending before the first worker starts:
	// each task is a whole pass (400 patients are under the engine's
	// batch of 500), so each location has one task at a time.
	for _, loc := range locs {
		task, _ := tasks.NewPatientsSyncTask(loc)
		if _, err := client.Enqueue(task); err != nil {
			b.Fatal(err)
		}
	}

	workerCtx, stopWorkers := context.WithCancel(ctx)
	exited := make(chan error, sz.workers)
	started := 0
	stop := func() {
		stopWorkers()
		for range started {
			if err := <-exited; err != nil {
				b.Errorf("worker: %v", err)
			}
		}
		started = 0
	}
	defer stop()

	b.StartTimer()
	stages := make([]scaleStage, sz.workers)
	for k := range stages {
		known, err := syncServers(insp)
		if err != nil {
			b.Fatal(err)
		}
		begin := time.Now()
		d, err := app.Open(workerCtx, cfg, app.NewLogger(io.Discard, cfg.LogLevel), true, app.RedisPool(app.WorkerOptions{}.RedisPool()))
		if err != nil {
			b.Fatal(err)
		}
		stages[k].open = time.Since(begin)
		started++
		go func() {
			err := app.RunWorker(workerCtx, d, app.WorkerOptions{})
			d.Close()
			exited <- err
		}()
		first := make(chan time.Time, 1)
		// Two heartbeats after the window are enough to see a task it took.
		go func() { first <- firstTask(insp, known, begin.Add(sz.warmup+sz.window+11*time.Second)) }()

		time.Sleep(sz.warmup)
		c0 := countFake(stack.Fake)
		time.Sleep(sz.window)
		c1 := countFake(stack.Fake)
		s := &stages[k]
		s.writes, s.locs = c1.since(c0)
		s.span, s.limited = c1.at.Sub(c0.at), c1.limited-c0.limited
		if s.running, err = runningSyncs(insp); err != nil {
			b.Fatal(err)
		}
		if at := <-first; !at.IsZero() {
			s.firstTask = at.Sub(begin)
		}
	}
	b.StopTimer()
	stop()

	// The workers are gone, so nothing is in flight: every API request
	// the fake counted is a contact write or a 429, or the figures above
	// missed some.
	st := stack.Fake.Stats()
	api := stack.Fake.Requests("", "") - stack.Fake.Requests("/oauth", "")
	writes, limited := sum(st.ContactCreates)+sum(st.ContactUpdates), sum(st.RateLimited)
	if api != writes+limited {
		b.Errorf("the fake counted %d API requests, %d of them contact writes and %d answered 429", api, writes, limited)
	}
	var outcomes []struct {
		Outcome string
		N       int
	}
	if err := storetest.DB(b, stack.DatabaseURL).Model(&store.SyncRun{}).
		Select("outcome, count(*) AS n").Group("outcome").Order("outcome").Scan(&outcomes).Error; err != nil {
		b.Fatal(err)
	}

	ideal := float64(sz.locations) * 100 / 10
	for k, s := range stages {
		rate := float64(s.writes) / s.span.Seconds()
		first := "no sync task taken"
		if s.firstTask > 0 {
			first = "first sync task " + s.firstTask.Round(time.Millisecond).String() + " after start"
		}
		fmt.Printf("workers=%d: %d contact writes in %s from %d locations = %.0f/s, %.3f of the limits' %.0f/s; "+
			"%d sync tasks running; %d 429s; %s (app.Open %s)\n",
			k+1, s.writes, s.span.Round(time.Millisecond), s.locs, rate, rate/ideal, ideal,
			s.running, s.limited, first, s.open.Round(time.Millisecond))
		b.ReportMetric(rate, fmt.Sprintf("req/s-%dw", k+1))
		b.ReportMetric(rate/ideal, fmt.Sprintf("of-limit-%dw", k+1))
		if s.firstTask > 0 {
			b.ReportMetric(float64(s.firstTask.Milliseconds()), fmt.Sprintf("first-task-ms-%dw", k+1))
		}
	}
	fmt.Printf("whole run: %d API requests, %d contact writes, %d answered 429; sync runs by outcome: %+v\n",
		api, writes, limited, outcomes)
	b.ReportMetric(float64(limited), "429s")
}

// syncServers returns the ids of the asynq servers that take sync tasks
// (the default queue) now.
func syncServers(insp *asynq.Inspector) (map[string]bool, error) {
	servers, err := insp.Servers()
	if err != nil {
		return nil, err
	}
	ids := make(map[string]bool, len(servers))
	for _, s := range servers {
		if _, ok := s.Queues[tasks.QueueDefault]; ok {
			ids[s.ID] = true
		}
	}
	return ids, nil
}

// firstTask waits until a sync server not in known lists a running sync
// task, and returns when the earliest it lists started, or the zero time
// at deadline.
func firstTask(insp *asynq.Inspector, known map[string]bool, deadline time.Time) time.Time {
	for time.Now().Before(deadline) {
		servers, _ := insp.Servers()
		for _, s := range servers {
			if _, ok := s.Queues[tasks.QueueDefault]; !ok || known[s.ID] {
				continue
			}
			var starts []time.Time
			for _, w := range s.ActiveWorkers {
				if w.Queue == tasks.QueueDefault {
					starts = append(starts, w.Started)
				}
			}
			if len(starts) > 0 {
				return slices.MinFunc(starts, time.Time.Compare)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Time{}
}

// runningSyncs counts the sync tasks that asynq's servers list as running.
func runningSyncs(insp *asynq.Inspector) (int, error) {
	servers, err := insp.Servers()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range servers {
		for _, w := range s.ActiveWorkers {
			if w.Queue == tasks.QueueDefault {
				n++
			}
		}
	}
	return n, nil
}

func backend(st *store.Store) string {
	if st.Postgres() {
		return "PostgreSQL"
	}
	return "SQLite"
}
