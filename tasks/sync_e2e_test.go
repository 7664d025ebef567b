package tasks_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/tasks"
)

func TestMain(m *testing.M) {
	testenv.RunProcess("worker", workerMain)
	os.Exit(m.Run())
}

// workerMain is a worker process: the real wiring (app.Open, app.RunWorker)
// configured by the environment, as cmd/worker runs it.
func workerMain() int {
	ctx, stop := app.SignalContext(context.Background())
	defer stop()
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	loader := config.NewLoader(fs, os.Getenv, "127.0.0.1:0")
	concurrency := fs.Int("concurrency", 10, "sync tasks run at once")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return app.ExitUsage
	}
	loader.Require(config.VarClientID, config.VarClientSecret, config.VarEncryptionKey)
	cfg, err := loader.Load()
	if err != nil {
		return app.Exit(os.Stderr, "worker", err)
	}
	err = app.RunWorkerProcess(ctx, cfg, app.WorkerOptions{Concurrency: *concurrency}, app.NewLogger(os.Stderr, cfg.LogLevel))
	return app.Exit(os.Stderr, "worker", err)
}

// arrivals records when each API request reached the fake GHL, by
// location.
type arrivals struct {
	fake *ghltest.Server
	locs []string

	mu      sync.Mutex
	byToken map[string]string
	times   map[string][]time.Time
	// inFlight counts API requests being served; abandoned those whose
	// client went away before the answer.
	inFlight, abandoned atomic.Int64
}

func (a *arrivals) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && !strings.HasPrefix(r.URL.Path, "/oauth") {
		now := time.Now()
		a.mu.Lock()
		loc, known := a.byToken[tok]
		if !known {
			for _, l := range a.locs {
				if a.fake.Valid(l, tok) {
					loc = l
				}
			}
			a.byToken[tok] = loc
		}
		a.times[loc] = append(a.times[loc], now)
		a.mu.Unlock()
		a.inFlight.Add(1)
		defer func() {
			// The answer is flushed once the handler returns: a request
			// whose context ended by now lost its client mid-call.
			if r.Context().Err() != nil {
				a.abandoned.Add(1)
			}
			a.inFlight.Add(-1)
		}()
	}
	a.fake.Handler().ServeHTTP(w, r)
}

func (a *arrivals) of(loc string) []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.times[loc])
}

// setupProcesses returns a stack whose fake GHL records arrivals, with the
// locations connected and seeded with patients and appointments, and an
// asynq client and inspector on its Redis.
func setupProcesses(t testing.TB, opts ghltest.Options, patients, appointments int, locs ...string) (*syncEnv, *arrivals) {
	t.Helper()
	opts.ClientID, opts.ClientSecret = storetest.ClientID, storetest.ClientSecret
	fake := ghltest.New(opts)
	rec := &arrivals{fake: fake, locs: locs, byToken: map[string]string{}, times: map[string][]time.Time{}}
	ts := httptest.NewServer(rec)
	t.Cleanup(ts.Close)
	fake.URL = ts.URL
	key := testenv.NewKey(t)
	st, dbURL := storetest.Open(t, key)
	e := &syncEnv{Stack: &storetest.Stack{Fake: fake, Store: st, DatabaseURL: dbURL, RedisURL: testenv.RedisURL(t), Key: key}}
	redisOpt, err := asynq.ParseRedisURI(e.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	e.client, e.insp = asynq.NewClient(redisOpt), asynq.NewInspector(redisOpt)
	t.Cleanup(func() { e.client.Close(); e.insp.Close() })
	for _, loc := range locs {
		e.Connect(t, loc, time.Now().Add(24*time.Hour))
		fake.AddCalendar(loc, "cal-"+loc, "Physio")
		e.seed(t, loc, patients, appointments)
	}
	return e, rec
}

func startWorker(t testing.TB, e *syncEnv, concurrency int) *testenv.Process {
	t.Helper()
	return testenv.StartProcess(t, "worker", e.Env(), "--concurrency", fmt.Sprint(concurrency))
}

// rate sums up the arrivals of one location against GHL's window.
type rate struct {
	requests int
	span     time.Duration
	// mean is the average number of requests in a window, over windows
	// starting every 10 ms from the first arrival to a window before the
	// last: the rate a location gets while it has work.
	mean float64
	// max is the most requests that arrived within one window.
	max int
}

func measure(times []time.Time, window time.Duration) rate {
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	r := rate{requests: len(times)}
	if len(times) < 2 {
		return r
	}
	first, last := times[0], times[len(times)-1]
	r.span = last.Sub(first)
	in := func(from time.Time) int {
		i, _ := slices.BinarySearchFunc(times, from, time.Time.Compare)
		j, _ := slices.BinarySearchFunc(times, from.Add(window), time.Time.Compare)
		return j - i
	}
	sum, n := 0, 0
	for from := first; !from.Add(window).After(last); from = from.Add(10 * time.Millisecond) {
		sum += in(from)
		n++
	}
	if n > 0 {
		r.mean = float64(sum) / float64(n)
	}
	for _, t := range times {
		r.max = max(r.max, in(t))
	}
	return r
}

// noFailures checks that no task of the default queue ever failed: a 429
// that went back to the queue is not a failure.
func noFailures(t testing.TB, insp *asynq.Inspector) {
	t.Helper()
	archived, err := insp.ListArchivedTasks(tasks.QueueDefault)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range archived {
		t.Errorf("task %s failed for good: %s", a.ID, a.LastErr)
	}
	done, err := insp.ListCompletedTasks(tasks.QueueDefault, asynq.PageSize(1000))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range done {
		if c.Retried > 0 {
			t.Errorf("task %s counted %d failures, the last: %s", c.ID, c.Retried, c.LastErr)
		}
	}
}

// Issue test 4: two worker processes sync three locations of 600 patients
// each while the fake GHL enforces 100 requests per 10 s: no 429 reaches a
// task as a failure, and each location gets at least 90% of the limit.
func TestSyncKeepsGHLsLimitAcrossWorkers(t *testing.T) {
	t.Parallel()
	locs := []string{"loc1", "loc2", "loc3"}
	e, rec := setupProcesses(t, ghltest.Options{EnforceRateLimit: true}, 600, 0, locs...)
	startWorker(t, e, 10)
	startWorker(t, e, 10)

	_, results := e.syncAll(t, tasks.NewPatientsSyncTask)
	noFailures(t, e.insp)
	for _, loc := range locs {
		res := results[loc]
		if res.Created != 600 || res.FailedCount != 0 || res.Batch < 2 {
			t.Errorf("%s: %+v", loc, res)
		}
		if n := e.Fake.RateLimited(loc); n != 0 {
			t.Errorf("%s: GHL answered 429 %d times", loc, n)
		}
		r := measure(rec.of(loc), 10*time.Second)
		t.Logf("%s: %d requests in %s: %.1f per 10 s on average, at most %d in any 10 s (limit 100)",
			loc, r.requests, r.span.Round(time.Millisecond), r.mean, r.max)
		// 600 upserts, and the patient id custom field: listed and
		// created by the first run, whose follow-ups (a batch, or a
		// hand-back) take it as the first found it. Nothing more: a create
		// the limiter handed back was never sent, so no follow-up searches
		// for it.
		if want := 602; r.requests != want || r.mean < 90 || r.max > 100 {
			t.Errorf("%s: %+v; want %d requests, at least 90 per 10 s, never more than 100", loc, r, want)
		}
		e.checkContacts(t, loc, 600)
	}
}

// Issue test 2: a worker is killed (SIGKILL) in the middle of a sync, with
// an appointment created in GHL whose answer it never read; the sync run
// again, and the dead worker's task retried, leave every contact and
// appointment in GHL exactly once.
func TestSyncSurvivesAWorkerKilledMidSync(t *testing.T) {
	t.Parallel()
	const n = 300
	e, _ := setupProcesses(t, ghltest.Options{EnforceRateLimit: true}, n, n, "loc1")
	// GHL books the first appointment, then sits on the answer.
	e.Fake.InjectFault(ghltest.Fault{Path: "/calendars/events/appointments", LatencyAfter: 5 * time.Second, Times: 1})

	first := startWorker(t, e, 10)
	task, _ := tasks.NewAppointmentsSyncTask("loc1")
	if _, err := e.client.Enqueue(task); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, "GHL booked an appointment and holds the answer", func() bool {
		st := e.Fake.Stats()
		return st.Faults == 1 && st.AppointmentCreates["loc1"] >= 1
	})
	first.Kill()
	killedAt := e.Fake.Stats()
	if killedAt.AppointmentCreates["loc1"] >= n || killedAt.ContactCreates["loc1"] >= n {
		t.Fatalf("the sync was over before the kill: %+v", killedAt)
	}
	runs, err := e.Store.SyncRuns(context.Background(), "loc1", "", 10)
	if err != nil || len(runs) != 1 || runs[0].FinishedAt != nil {
		t.Fatalf("run log at the kill: %+v, %v; want one unfinished run", runs, err)
	}

	second := startWorker(t, e, 10)
	res := e.syncLocation(t, tasks.NewAppointmentsSyncTask, "loc1")
	if res.FailedCount != 0 {
		t.Errorf("appointments sync after the kill: %+v", res)
	}
	res = e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	if res.FailedCount != 0 || res.Created != 0 {
		t.Errorf("patients sync after the kill: %+v", res)
	}
	check := func(when string) {
		t.Helper()
		contacts := e.checkContacts(t, "loc1", n)
		e.checkAppointments(t, "loc1", n, n, contacts)
		st := e.Fake.Stats()
		if st.AppointmentCreates["loc1"] != n || st.ContactCreates["loc1"] != n {
			t.Errorf("%s: %d appointments and %d contacts created, want %d each",
				when, st.AppointmentCreates["loc1"], st.ContactCreates["loc1"], n)
		}
	}
	check("after the sync ran again")

	// The dead worker's task comes back once its lease expires, and finds
	// nothing left to do.
	testenv.Eventually(t, 4*time.Minute, "the dead worker's task to be retried and done", func() bool {
		q, err := e.insp.GetQueueInfo(tasks.QueueDefault)
		return err == nil && q.Active+q.Pending+q.Retry+q.Scheduled == 0 && q.Completed >= 3
	})
	check("after the dead worker's task was retried")

	metrics := scrape(t, second)
	if !regexp.MustCompile(`ghlsync_sync_records_total\{kind="appointment",outcome="created"\} [1-9]`).MatchString(metrics) {
		t.Errorf("/metrics does not count created appointments:\n%s", grep(metrics, "ghlsync_sync_records_total"))
	}
}

var listening = regexp.MustCompile(`msg=listening addr=(\S+)`)

// scrape reads a worker's /metrics, at the address it logged.
func scrape(t testing.TB, p *testenv.Process) string {
	t.Helper()
	m := listening.FindStringSubmatch(p.Output.String())
	if m == nil {
		t.Fatalf("the worker logged no metrics address:\n%s", p.Output)
	}
	resp, err := http.Get("http://" + m[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func grep(s, prefix string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
