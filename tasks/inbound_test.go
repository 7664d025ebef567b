package tasks_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/redisconn"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/syncer"
	"github.com/ghlsync/ghlsync/tasks"
	"github.com/ghlsync/ghlsync/web"
)

// inboundEnv is syncEnv with both directions: the fake sends its
// webhooks to a web server of the test's own, whose recorded events a
// worker in process (sync and inbound tasks) processes into the inbox.
type inboundEnv struct {
	*syncEnv
	inbound *tasks.InboundHandlers
	key     ed25519.PrivateKey
	web     *httptest.Server
	srv     *asynq.Server
}

func setupInbound(t testing.TB, locs ...string) *inboundEnv {
	t.Helper()
	e := &inboundEnv{syncEnv: newSyncEnv(t, ghltest.Options{}, nil, locs...)}
	contacts, ok := e.h.Contacts.(syncer.ContactReader)
	if !ok {
		t.Fatal("the engine's contacts cannot read a contact")
	}
	pager, ok := e.h.Contacts.(syncer.ContactPager)
	if !ok {
		t.Fatal("the engine's contacts cannot page")
	}
	e.inbound = &tasks.InboundHandlers{Inbound: &syncer.Inbound{Store: e.Store, Engine: &e.h.Engine, Contacts: contacts},
		Reconciles: e.Store, Pager: pager, Locations: e.Store, Enqueuer: e.client}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e.key = priv
	s := &web.Server{
		Redis: e.Redis(t),
		Log:   slog.New(slog.NewTextHandler(e.logs, nil)),
		Webhooks: web.Webhooks{Key: pub, Events: e.Store,
			Process: func(ctx context.Context, id int64) error { return tasks.EnqueueWebhookEvent(ctx, e.client, id) }},
	}
	e.web = httptest.NewServer(s.Handler())
	t.Cleanup(e.web.Close)
	e.Fake.SetWebhooks(ghltest.WebhookOptions{URL: e.web.URL + "/api/webhooks/ghl", Key: priv, Backoff: 20 * time.Millisecond})
	e.startWorker(t)
	return e
}

// startWorker starts the in-process worker of sync and inbound tasks.
func (e *inboundEnv) startWorker(t testing.TB) {
	t.Helper()
	redisOpt, err := redisconn.Parse(e.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = asynq.NewServer(redisOpt, asynq.Config{
		Concurrency:       10,
		Queues:            map[string]int{tasks.QueueDefault: 1},
		RetryDelayFunc:    tasks.RetryDelay,
		IsFailure:         tasks.IsFailure,
		TaskCheckInterval: 20 * time.Millisecond,
		LogLevel:          asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypePatientsSync, e.h.HandlePatientsSync)
	mux.HandleFunc(tasks.TypeAppointmentsSync, e.h.HandleAppointmentsSync)
	mux.HandleFunc(tasks.TypeWebhookProcess, e.inbound.HandleWebhookProcess)
	mux.HandleFunc(tasks.TypeReconcile, e.inbound.HandleReconcile)
	if err := e.srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	srv := e.srv
	t.Cleanup(srv.Shutdown)
}

// settle waits until the fake has delivered every webhook and every
// recorded event is processed.
func (e *inboundEnv) settle(t testing.TB, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := e.Fake.WaitWebhooks(ctx); err != nil {
		t.Fatalf("the fake's webhooks: %v (%+v)", err, e.Fake.WebhookStats())
	}
	if st := e.Fake.WebhookStats(); st.Dropped > 0 {
		t.Fatalf("the fake dropped webhooks: %+v", st)
	}
	waitFor(t, ctx, "every recorded event processed", func() bool {
		evs, err := e.Store.UnprocessedWebhookEvents(ctx, time.Now().Add(time.Hour), 0, 1)
		return err == nil && len(evs) == 0
	})
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(t testing.TB, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-tick.C:
		}
	}
}

func (e *inboundEnv) inbox(t testing.TB, loc string) []store.Change {
	t.Helper()
	rows, err := e.Store.Changes(context.Background(), loc, false, 100000)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func changesOf(t *testing.T, c store.Change) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(c.Changes), &m); err != nil {
		t.Fatalf("changes of row %d: %v: %s", c.ID, err, c.Changes)
	}
	return m
}

// TestInboundEchoesOfASyncStayOutOfTheInbox: a sync that creates and
// then updates 100 contacts makes the fake send 200 webhooks, all of them
// ghlsync's own writes: the inbox stays empty. A staff edit in GHL then
// lands as exactly one row, with the patient's external id and what
// changed.
func TestInboundEchoesOfASyncStayOutOfTheInbox(t *testing.T) {
	t.Parallel()
	e := setupInbound(t, "loc1")
	e.seed(t, "loc1", 100, 0)
	if res := e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1"); res.Created != 100 {
		t.Fatalf("first sync: %+v", res)
	}
	e.exec(t, `UPDATE patients SET city = 'Shelbyville', first_name = first_name || 'x'`)
	if res := e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1"); res.Updated != 100 {
		t.Fatalf("second sync: %+v", res)
	}
	e.settle(t, time.Minute)
	if st := e.Fake.WebhookStats(); st.Delivered < 200 {
		t.Fatalf("the fake delivered %d webhooks, want the 200 of the two syncs", st.Delivered)
	}
	if rows := e.inbox(t, "loc1"); len(rows) != 0 {
		t.Fatalf("inbox after the syncs' echoes: %d rows, want 0; first %+v", len(rows), rows[0])
	}

	st := e.patientState(t, "loc1", "p-0007")
	if _, ok := e.Fake.StaffEditContact(st.ContactID, func(c *ghltest.Contact) { c.LastName = "Edited-in-GHL" }); !ok {
		t.Fatal("no contact of p-0007 in the fake")
	}
	e.settle(t, time.Minute)
	rows := e.inbox(t, "loc1")
	if len(rows) != 1 {
		t.Fatalf("inbox after one staff edit: %d rows, want 1: %+v", len(rows), rows)
	}
	r := rows[0]
	if r.Kind != store.ChangeContactUpdated || r.ExternalID != "p-0007" || r.GHLID != st.ContactID || r.Processed {
		t.Fatalf("row: %+v", r)
	}
	if got := changesOf(t, r); len(got) != 1 || got["lastName"] != "Edited-in-GHL" {
		t.Fatalf("changes: %v, want only lastName", got)
	}
	if r.GHLOccurredAt == nil || r.ReceivedAt.IsZero() {
		t.Fatalf("times of the row: %+v", r)
	}
}

// TestInboundBookingInGHLCarriesThePatient: an appointment booked in
// GHL for a synced patient lands in the inbox with the patient's external
// id; one booked for a contact ghlsync does not know carries the
// contact's details.
func TestInboundBookingInGHLCarriesThePatient(t *testing.T) {
	t.Parallel()
	e := setupInbound(t, "loc1")
	e.seed(t, "loc1", 3, 0)
	e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	e.settle(t, time.Minute)
	st := e.patientState(t, "loc1", "p-0001")
	start := time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC)
	booked := e.Fake.BookAppointment(ghltest.Appointment{LocationID: "loc1", CalendarID: "cal-loc1", ContactID: st.ContactID,
		Title: "Booked online", StartTime: start.Format(time.RFC3339), EndTime: start.Add(time.Hour).Format(time.RFC3339)})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var rows []store.Change
	waitFor(t, ctx, "the booking in the inbox", func() bool {
		rows = e.inbox(t, "loc1")
		return len(rows) > 0
	})
	r := rows[0]
	if len(rows) != 1 || r.Kind != store.ChangeAppointmentCreated || r.GHLID != booked.ID || r.PatientExternalID != "p-0001" || r.ExternalID != "" {
		t.Fatalf("inbox: %+v", rows)
	}
	got := changesOf(t, r)
	if got["title"] != "Booked online" || got["calendarId"] != "cal-loc1" || got["contact"] != nil {
		t.Fatalf("changes: %v", got)
	}

	stranger := e.Fake.StaffCreateContact(ghltest.Contact{LocationID: "loc1", FirstName: "Walk", LastName: "In", Email: "walk.in@example.com"})
	e.Fake.BookAppointment(ghltest.Appointment{LocationID: "loc1", CalendarID: "cal-loc1", ContactID: stranger.ID,
		StartTime: start.Add(2 * time.Hour).Format(time.RFC3339), EndTime: start.Add(3 * time.Hour).Format(time.RFC3339)})
	e.settle(t, time.Minute)
	rows = e.inbox(t, "loc1")
	if len(rows) != 3 {
		t.Fatalf("inbox: %d rows, want the booking, the new contact and its booking: %+v", len(rows), rows)
	}
	var appt *store.Change
	for i := range rows {
		if rows[i].Kind == store.ChangeAppointmentCreated && rows[i].GHLID != booked.ID {
			appt = &rows[i]
		}
	}
	if appt == nil || appt.PatientExternalID != "" {
		t.Fatalf("the stranger's booking: %+v", rows)
	}
	contact, _ := changesOf(t, *appt)["contact"].(map[string]any)
	if contact["id"] != stranger.ID || contact["email"] != "walk.in@example.com" || contact["firstName"] != "Walk" {
		t.Fatalf("the stranger's details: %v", contact)
	}
}

// killableStore is the store of a worker that can be killed: the
// processing of an event stops, until the worker's context ends, as a
// worker killed there would: with killAfter, after the event's
// transaction committed and before its task is done (asynq runs it
// again); with killIn, after it wrote its inbox row and before its
// transaction commits.
type killableStore struct {
	*store.Store
	killIn, killAfter atomic.Bool
	cutIn, cutAfter   atomic.Int64
	// dead, closed, ends what the cut processing waits for, as the
	// death of a process ends its connections: its transactions roll
	// back.
	dead chan struct{}
}

// wait waits for the worker's context to end, or for its death.
func (s *killableStore) wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.dead:
		return errors.New("the worker is dead")
	}
}

func (s *killableStore) ProcessWebhookEvent(ctx context.Context, id int64, lockKey string, fn func(tx *store.InboundTx, ev *store.WebhookEvent) error) error {
	err := s.Store.ProcessWebhookEvent(ctx, id, lockKey, func(tx *store.InboundTx, ev *store.WebhookEvent) error {
		if err := fn(tx, ev); err != nil || !s.killIn.Load() {
			return err
		}
		s.cutIn.Add(1)
		return s.wait(ctx)
	})
	if err != nil || !s.killAfter.Load() {
		return err
	}
	s.cutAfter.Add(1)
	return s.wait(ctx)
}

// TestInboundBurstLandsEachChangeOnce: 2,000 webhooks posted at once,
// 200 of them twice, while the worker processing them is killed half way
// (its transactions cut after the inbox write) and another takes over,
// and while one enqueue in 25 fails after the event was recorded: the
// inbox holds each change exactly once.
func TestInboundBurstLandsEachChangeOnce(t *testing.T) {
	t.Parallel()
	e := setupInbound(t, "loc1")
	e.srv.Shutdown() // this test runs its own workers
	ks := &killableStore{Store: e.Store, dead: make(chan struct{})}
	killable := *e.inbound.Inbound
	killable.Store = ks

	var enqueues atomic.Int64
	s := &web.Server{
		Redis: e.Redis(t),
		Log:   slog.New(slog.NewTextHandler(e.logs, nil)),
		Webhooks: web.Webhooks{Key: e.key.Public().(ed25519.PublicKey), Events: e.Store,
			Process: func(ctx context.Context, id int64) error {
				if enqueues.Add(1)%25 == 0 {
					return errors.New("redis: connection refused")
				}
				return tasks.EnqueueWebhookEvent(ctx, e.client, id)
			}},
	}
	ws := httptest.NewServer(s.Handler())
	t.Cleanup(ws.Close)

	startWorker := func(in *syncer.Inbound) *asynq.Server {
		redisOpt, err := redisconn.Parse(e.RedisURL)
		if err != nil {
			t.Fatal(err)
		}
		srv := asynq.NewServer(redisOpt, asynq.Config{Concurrency: 10, Queues: map[string]int{tasks.QueueDefault: 1},
			RetryDelayFunc: tasks.RetryDelay, IsFailure: tasks.IsFailure, TaskCheckInterval: 20 * time.Millisecond,
			ShutdownTimeout: 100 * time.Millisecond, LogLevel: asynq.FatalLevel})
		mux := asynq.NewServeMux()
		mux.HandleFunc(tasks.TypeWebhookProcess, (&tasks.InboundHandlers{Inbound: in}).HandleWebhookProcess)
		if err := srv.Start(mux); err != nil {
			t.Fatal(err)
		}
		return srv
	}
	first := startWorker(&killable)

	const n = 2000
	bodies := make([][]byte, n)
	now := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	for i := range bodies {
		bodies[i], _ = json.Marshal(map[string]any{"type": "ContactUpdate", "locationId": "loc1",
			"id": fmt.Sprintf("contact%013d", i), "firstName": fmt.Sprintf("Changed%d", i),
			"webhookId": fmt.Sprintf("wh-%d", i), "timestamp": now})
	}
	var posts []int
	for i := range n {
		posts = append(posts, i)
		if i%10 == 0 {
			posts = append(posts, i)
		}
	}
	mrand.Shuffle(len(posts), func(i, j int) { posts[i], posts[j] = posts[j], posts[i] })
	work := make(chan int)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 32 {
		wg.Go(func() {
			for i := range work {
				req, _ := http.NewRequest(http.MethodPost, ws.URL+"/api/webhooks/ghl", bytes.NewReader(bodies[i]))
				req.Header.Set("x-ghl-signature", base64.StdEncoding.EncodeToString(ed25519.Sign(e.key, bodies[i])))
				resp, err := http.DefaultClient.Do(req)
				if err != nil || resp.StatusCode != http.StatusOK {
					failed.Add(1)
				}
				if resp != nil {
					resp.Body.Close()
				}
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	go func() {
		for _, i := range posts {
			work <- i
		}
		close(work)
	}()
	waitFor(t, ctx, "a quarter of the changes in the inbox", func() bool { return len(e.inbox(t, "loc1")) >= n/4 })
	// The kill: tasks whose change committed are cut first (on SQLite a
	// transaction cut open holds the one writer), then transactions.
	ks.killAfter.Store(true)
	waitFor(t, ctx, "tasks cut after their commit", func() bool { return ks.cutAfter.Load() >= 3 })
	ks.killIn.Store(true)
	waitFor(t, ctx, "a transaction cut", func() bool { return ks.cutIn.Load() >= 1 })
	first.Shutdown()
	close(ks.dead)
	before := len(e.inbox(t, "loc1"))
	second := startWorker(e.inbound.Inbound)
	t.Cleanup(second.Shutdown)
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d posts were not answered 200", failed.Load())
	}
	sweep := &tasks.WebhookSweep{Events: e.Store, Enqueuer: e.client, Redis: e.Redis(t), After: time.Nanosecond}
	swept, err := sweep.SweepOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "every event processed", func() bool {
		evs, err := e.Store.UnprocessedWebhookEvents(ctx, time.Now().Add(time.Hour), 0, 1)
		return err == nil && len(evs) == 0
	})
	rows := e.inbox(t, "loc1")
	seen := map[string]int{}
	for _, r := range rows {
		seen[r.EventID]++
		if got := changesOf(t, r); got["firstName"] != "Changed"+strings.TrimPrefix(r.EventID, "wh-") {
			t.Fatalf("row %+v: changes %v", r, got)
		}
	}
	if len(rows) != n || len(seen) != n {
		t.Fatalf("inbox: %d rows of %d events, want %d each once (%d landed before the kill)", len(rows), len(seen), n, before)
	}
	t.Logf("%d posts, %d rows before the kill, %d transactions cut by it, %d tasks cut after their commit, %d enqueues failed, %d swept",
		len(posts), before, ks.cutIn.Load(), ks.cutAfter.Load(), enqueues.Load()/25, swept)
}

// TestInboundConflictPolicy: a contact edited in GHL and in the clinic
// since the last sync. With report, the sync leaves GHL's value, the
// record fails saying why and the inbox has the conflict; with clinic
// (the default), GHL gets the clinic's value and the inbox shows what
// was overwritten, while the overwrite's own webhook adds nothing.
func TestInboundConflictPolicy(t *testing.T) {
	t.Parallel()
	e := setupInbound(t, "loc1", "loc2")
	ctx := context.Background()
	if err := e.Store.SaveSettings(ctx, store.LocationSettings{LocationID: "loc1", ConflictPolicy: store.ConflictReport}); err != nil {
		t.Fatal(err)
	}
	for _, loc := range []string{"loc1", "loc2"} {
		e.seed(t, loc, 3, 0)
		e.syncLocation(t, tasks.NewPatientsSyncTask, loc)
	}
	e.settle(t, time.Minute)
	contactOf := map[string]string{}
	for _, loc := range []string{"loc1", "loc2"} {
		contactOf[loc] = e.patientState(t, loc, "p-0001").ContactID
		e.Fake.StaffEditContact(contactOf[loc], func(c *ghltest.Contact) { c.LastName = "Staff-" + loc })
	}
	e.settle(t, time.Minute)
	e.exec(t, `UPDATE patients SET last_name = 'Clinic-' || location_id, city = 'Ogdenville' WHERE external_id = 'p-0001'`)

	lastName := func(loc string) string {
		for _, c := range e.Fake.Contacts(loc) {
			if c.ID == contactOf[loc] {
				return c.LastName
			}
		}
		t.Fatalf("no contact %s in %s", contactOf[loc], loc)
		return ""
	}
	kinds := func(loc string) map[string]store.Change {
		out := map[string]store.Change{}
		for _, r := range e.inbox(t, loc) {
			if _, dup := out[r.Kind]; dup {
				t.Fatalf("%s: two %s rows: %+v", loc, r.Kind, e.inbox(t, loc))
			}
			out[r.Kind] = r
		}
		return out
	}

	res := e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	if res.FailedCount != 1 || !strings.Contains(res.Failed[0].Reason, "conflict: lastName changed in GHL") {
		t.Fatalf("report: %+v", res)
	}
	e.settle(t, time.Minute)
	if got := lastName("loc1"); got != "Staff-loc1" {
		t.Fatalf("report: GHL's last name is %q, want staff's kept", got)
	}
	rows := kinds("loc1")
	if c, ok := rows[store.ChangeContactConflict]; !ok || c.ExternalID != "p-0001" || changesOf(t, c)["lastName"] != "Staff-loc1" || len(rows) != 2 {
		t.Fatalf("report: inbox %+v", rows)
	}

	res = e.syncLocation(t, tasks.NewPatientsSyncTask, "loc2")
	if res.FailedCount != 0 || res.Updated != 1 {
		t.Fatalf("clinic: %+v", res)
	}
	e.settle(t, time.Minute)
	if got := lastName("loc2"); got != "Clinic-loc2" {
		t.Fatalf("clinic: GHL's last name is %q, want the clinic's", got)
	}
	rows = kinds("loc2")
	if c, ok := rows[store.ChangeContactOverwritten]; !ok || c.ExternalID != "p-0001" || changesOf(t, c)["lastName"] != "Staff-loc2" || len(rows) != 2 {
		t.Fatalf("clinic: inbox %+v", rows)
	}
}

// reconcile runs the reconciliation task of loc and returns its result.
func (e *inboundEnv) reconcile(t testing.TB, loc string) syncer.ReconcileResult {
	t.Helper()
	task, err := tasks.NewReconcileTask(loc)
	if err != nil {
		t.Fatal(err)
	}
	info, err := e.client.Enqueue(task)
	if err != nil {
		t.Fatal(err)
	}
	info = finished(t, e.insp, info.ID, time.Minute)
	var res syncer.ReconcileResult
	if err := json.Unmarshal(info.Result, &res); err != nil || info.State != asynq.TaskStateCompleted {
		t.Fatalf("reconciliation of %s: %s %s: %v", loc, info.State, info.LastErr, err)
	}
	return res
}

// TestInboundReconciliationRepairs: behind ghlsync's back the fake lost
// 20 contacts and 2 appointments, gained 5 duplicate contacts and a
// duplicate appointment, and two staff edits sent no webhook. The
// reconciliation has the lost ones sent again (by the syncs it
// enqueues), reports the duplicates with both ids and lands the two edits
// in the inbox; a second one finds nothing.
func TestInboundReconciliationRepairs(t *testing.T) {
	t.Parallel()
	e := setupInbound(t, "loc1")
	e.seed(t, "loc1", 60, 10)
	e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	e.syncLocation(t, tasks.NewAppointmentsSyncTask, "loc1")
	e.settle(t, time.Minute)

	e.Fake.SetWebhooks(ghltest.WebhookOptions{}) // what follows sends no webhook
	byID := map[string]ghltest.Contact{}
	for _, c := range e.Fake.Contacts("loc1") {
		byID[c.ID] = c
	}
	contactOf := func(i int) string { return e.patientState(t, "loc1", fmt.Sprintf("p-%04d", i)).ContactID }
	lost := map[string]bool{}
	for i := 30; i < 50; i++ {
		lost[contactOf(i)] = e.Fake.DeleteContact(contactOf(i))
	}
	var dups []string
	for i := 10; i < 15; i++ {
		c := byID[contactOf(i)]
		c.ID = ""
		dups = append(dups, e.Fake.AddContact(c).ID)
	}
	edited := contactOf(50)
	e.Fake.StaffEditContact(edited, func(c *ghltest.Contact) { c.City = "Capital City" })
	e.Fake.StaffEditContact(contactOf(51), func(c *ghltest.Contact) { c.Tags = append(c.Tags, "vip") })
	events := map[string]ghltest.Appointment{}
	for _, a := range e.Fake.Appointments("loc1") {
		events[a.ID] = a
	}
	eventOf := func(ext string) string {
		p, err := e.Store.AppointmentPage(context.Background(), "loc1", "", 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range p {
			if a.ExternalID == ext {
				return a.Sync.EventID
			}
		}
		t.Fatalf("no appointment %s", ext)
		return ""
	}
	lostEvents := map[string]bool{eventOf("a-0003"): e.Fake.LoseAppointment(eventOf("a-0003")), eventOf("a-0004"): e.Fake.LoseAppointment(eventOf("a-0004"))}
	twin := events[eventOf("a-0005")]
	dupEvent := e.Fake.BookAppointment(ghltest.Appointment{LocationID: "loc1", CalendarID: twin.CalendarID, ContactID: twin.ContactID,
		StartTime: twin.StartTime, EndTime: twin.EndTime, Title: twin.Title}).ID

	res := e.reconcile(t, "loc1")
	if res.MissingCount != 20 || res.MissingAppointmentsCount != 2 || len(res.Duplicates) != 6 || res.NewDuplicates != 6 ||
		res.Changes != 2 || res.AppointmentChanges != 0 || res.Contacts != 45 || res.Events != 9 {
		t.Fatalf("first reconciliation: %+v", res)
	}
	for _, d := range res.Duplicates {
		switch {
		case d.Kind == store.RecordContact && d.ContactID != "" && slices.Contains(dups, d.Duplicate) && d.ContactID != d.Duplicate:
		case d.Kind == store.RecordAppointment && d.ExternalID == "a-0005" && d.EventID == twin.ID && d.Duplicate == dupEvent:
		default:
			t.Fatalf("duplicate %+v, want one of contacts %v or the appointment %s beside %s", d, dups, dupEvent, twin.ID)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	waitFor(t, ctx, "the lost patients and appointments sent again", func() bool {
		for i := range 60 {
			if st := e.patientState(t, "loc1", fmt.Sprintf("p-%04d", i)); lost[st.ContactID] || st.ContactID == "" || st.SentHash == "" {
				return false
			}
		}
		p, err := e.Store.AppointmentPage(context.Background(), "loc1", "", 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range p {
			if lostEvents[a.Sync.EventID] || a.Sync.EventID == "" || a.Sync.SentHash == "" {
				return false
			}
		}
		return true
	})
	if n, m := len(e.Fake.Contacts("loc1")), len(e.Fake.Appointments("loc1")); n != 65 || m != 11 {
		t.Fatalf("the fake holds %d contacts and %d appointments, want 65 (40 kept, 5 duplicates, 20 sent again) and 11 (8, 1, 2)", n, m)
	}
	kinds := map[string]int{}
	for _, r := range e.inbox(t, "loc1") {
		kinds[r.Kind]++
		if r.Kind == store.ChangeContactUpdated && r.GHLID == edited && changesOf(t, r)["city"] != "Capital City" {
			t.Fatalf("the undelivered edit: %+v", r)
		}
	}
	if kinds[store.ChangeContactDuplicate] != 5 || kinds[store.ChangeAppointmentDuplicate] != 1 || kinds[store.ChangeContactUpdated] != 2 || len(kinds) != 3 {
		t.Fatalf("inbox: %v", kinds)
	}

	res = e.reconcile(t, "loc1")
	if res.MissingCount != 0 || res.MissingAppointmentsCount != 0 || res.NewDuplicates != 0 || res.Changes != 0 || res.AppointmentChanges != 0 {
		t.Fatalf("second reconciliation found something: %+v", res)
	}
}

// TestInboundReconciliationFindsAppointmentChanges: an appointment
// edited in GHL with no webhook delivered lands, from the events answer,
// as one appointment.updated row with the changed fields; ghlsync's own
// update whose webhook was lost, and appointments unchanged, land
// nothing; a second reconciliation lands nothing.
func TestInboundReconciliationFindsAppointmentChanges(t *testing.T) {
	t.Parallel()
	e := setupInbound(t, "loc1")
	e.seed(t, "loc1", 4, 4)
	e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	e.syncLocation(t, tasks.NewAppointmentsSyncTask, "loc1")
	e.settle(t, time.Minute)

	e.Fake.SetWebhooks(ghltest.WebhookOptions{}) // what follows sends no webhook
	eventOf := map[string]string{}
	p, err := e.Store.AppointmentPage(context.Background(), "loc1", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range p {
		eventOf[a.ExternalID] = a.Sync.EventID
	}
	edited := eventOf["a-0000"]
	// A note staff wrote in GHL, its webhook delivered: GHL's webhooks
	// carry notes, its events answer does not, so the landed edit must
	// leave the note as it was.
	var before ghltest.Appointment
	for _, a := range e.Fake.Appointments("loc1") {
		if a.ID == edited {
			before = a
		}
	}
	payload, err := json.Marshal(map[string]any{"type": "AppointmentUpdate", "locationId": "loc1", "appointment": map[string]any{
		"id": before.ID, "calendarId": before.CalendarID, "contactId": before.ContactID, "title": before.Title,
		"appointmentStatus": before.AppointmentStatus, "assignedUserId": before.AssignedUserID, "address": before.Address,
		"notes": "Bring the MRI", "startTime": before.StartTime, "endTime": before.EndTime}})
	if err != nil {
		t.Fatal(err)
	}
	noted := &store.WebhookEvent{WebhookID: "note-" + edited, Type: "AppointmentUpdate", LocationID: "loc1", Payload: string(payload)}
	if _, err := e.Store.RecordWebhookEvent(context.Background(), noted); err != nil {
		t.Fatal(err)
	}
	if pr, err := e.inbound.Inbound.Process(context.Background(), noted.ID); err != nil || pr.Change == 0 {
		t.Fatalf("the note's webhook: %+v, %v", pr, err)
	}
	if _, ok := e.Fake.EditAppointmentUnheard(edited, func(a *ghltest.Appointment) {
		a.Title, a.Address = "Moved by staff", "Room 9"
	}); !ok {
		t.Fatalf("no event %q of a-0000", edited)
	}
	// ghlsync's own update, its webhook lost: an echo, not a change.
	e.exec(t, `UPDATE appointments SET updated_at = CURRENT_TIMESTAMP, title = 'Session 1, longer' WHERE location_id = 'loc1' AND external_id = 'a-0001'`)
	if res := e.syncLocation(t, tasks.NewAppointmentsSyncTask, "loc1"); res.Updated != 1 {
		t.Fatalf("the clinic's update: %+v", res)
	}

	res := e.reconcile(t, "loc1")
	if res.AppointmentChanges != 1 || res.Changes != 0 || res.Events != 4 || res.MissingAppointmentsCount != 0 || len(res.Duplicates) != 0 {
		t.Fatalf("first reconciliation: %+v", res)
	}
	rows := e.inbox(t, "loc1")
	rows = slices.DeleteFunc(rows, func(c store.Change) bool { return c.EventID == noted.WebhookID })
	if len(rows) != 1 {
		t.Fatalf("inbox: %d rows beside the note's, want the one edit: %+v", len(rows), rows)
	}
	r := rows[0]
	got := changesOf(t, r)
	if r.Kind != store.ChangeAppointmentUpdated || r.GHLID != edited || r.ExternalID != "a-0000" || r.PatientExternalID != "p-0000" ||
		len(got) != 2 || got["title"] != "Moved by staff" || got["address"] != "Room 9" {
		t.Fatalf("the undelivered edit: %+v, changes %v", r, got)
	}

	res = e.reconcile(t, "loc1")
	if res.AppointmentChanges != 0 || res.Changes != 0 {
		t.Fatalf("second reconciliation found something: %+v", res)
	}
	if rows := e.inbox(t, "loc1"); len(rows) != 2 {
		t.Fatalf("inbox after the second reconciliation: %d rows, want the note's and the edit's", len(rows))
	}
}

// TestInboundDeletionEchoesStayOut: what a sync does for deletions in
// the clinic (a cancelled appointment; a contact tagged and set DND, or
// deleted) comes back as webhooks that are ghlsync's own: no inbox row. A
// contact staff delete in GHL is one.
func TestInboundDeletionEchoesStayOut(t *testing.T) {
	t.Parallel()
	e := setupInbound(t, "loc1", "loc2")
	ctx := context.Background()
	if err := e.Store.SaveSettings(ctx, store.LocationSettings{LocationID: "loc2", DeletionAction: store.DeletionDelete}); err != nil {
		t.Fatal(err)
	}
	for _, loc := range []string{"loc1", "loc2"} {
		e.seed(t, loc, 4, 4)
		e.syncLocation(t, tasks.NewPatientsSyncTask, loc)
		e.syncLocation(t, tasks.NewAppointmentsSyncTask, loc)
	}
	e.settle(t, time.Minute)
	e.exec(t, `UPDATE appointments SET deleted_at = CURRENT_TIMESTAMP WHERE external_id = 'a-0002'`)
	e.exec(t, `UPDATE patients SET deleted_at = CURRENT_TIMESTAMP WHERE external_id = 'p-0003'`)
	for _, loc := range []string{"loc1", "loc2"} {
		if res := e.syncLocation(t, tasks.NewAppointmentsSyncTask, loc); res.Deleted != 1 {
			t.Fatalf("%s appointments: %+v", loc, res)
		}
		if res := e.syncLocation(t, tasks.NewPatientsSyncTask, loc); res.Deleted != 1 {
			t.Fatalf("%s patients: %+v", loc, res)
		}
	}
	e.settle(t, time.Minute)
	for _, loc := range []string{"loc1", "loc2"} {
		if rows := e.inbox(t, loc); len(rows) != 0 {
			t.Fatalf("%s: the deletions' echoes made %d rows: %+v", loc, len(rows), rows)
		}
	}
	// 16 creates; a cancellation each; loc1's tag and DND, loc2's deletion.
	if st := e.Fake.WebhookStats(); st.Delivered != 2*(4+4)+2+2+1 {
		t.Fatalf("the fake delivered only %+v", st)
	}
}

// TestInboundTagAndDNDEchoesStayOut: the tags ghlsync adds and removes
// through the tag endpoints, and the DND it turns on, come back as
// webhooks that are its own and land nowhere; a tag staff add in GHL is
// one row.
func TestInboundTagAndDNDEchoesStayOut(t *testing.T) {
	t.Parallel()
	e := setupInbound(t, "loc1")
	e.seed(t, "loc1", 20, 0)
	e.exec(t, `UPDATE patients SET tags = '["new patient", "package: 10 sessions"]', dnd = TRUE, updated_at = CURRENT_TIMESTAMP`)
	if res := e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1"); res.Created != 20 {
		t.Fatalf("first sync: %+v", res)
	}
	e.exec(t, `UPDATE patients SET tags = '["package: 10 sessions", "recall"]', updated_at = CURRENT_TIMESTAMP`)
	if res := e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1"); res.Updated != 20 {
		t.Fatalf("second sync: %+v", res)
	}
	e.settle(t, time.Minute)
	if st := e.Fake.WebhookStats(); st.Delivered < 80 {
		t.Fatalf("the fake delivered %d webhooks, want the creates', updates' and tag calls'", st.Delivered)
	}
	if rows := e.inbox(t, "loc1"); len(rows) != 0 {
		t.Fatalf("inbox after the syncs' tag and DND echoes: %d rows, want 0; first %+v", len(rows), rows[0])
	}

	st := e.patientState(t, "loc1", "p-0003")
	if _, ok := e.Fake.StaffEditContact(st.ContactID, func(c *ghltest.Contact) { c.Tags = append(c.Tags, "VIP") }); !ok {
		t.Fatal("no contact of p-0003 in the fake")
	}
	e.settle(t, time.Minute)
	rows := e.inbox(t, "loc1")
	if len(rows) != 1 || rows[0].ExternalID != "p-0003" {
		t.Fatalf("inbox after a staff tag: %d rows, want 1 of p-0003: %+v", len(rows), rows)
	}
	if got := changesOf(t, rows[0]); len(got) != 1 || got["tags"] == nil {
		t.Fatalf("changes: %v, want only tags", got)
	}
}

// TestInboundWebhooksOfOneInstant: GHL stamps its webhooks to the
// millisecond, and two of ghlsync's own calls to a contact can fall in
// one (the deletion action's tag, then its DND). Delivered in the other
// order, the tag's webhook shows the DND as it was before ghlsync's call:
// it is not a change of the clinic's. A webhook of a later instant that
// shows the same is one. Before that, the clinic turns DND on for the
// first time: GHL's default that the webhooks showed is no staff change
// for the sync to overwrite.
func TestInboundWebhooksOfOneInstant(t *testing.T) {
	t.Parallel()
	e := setupInbound(t, "loc1")
	ctx := context.Background()
	e.seed(t, "loc1", 1, 0)
	e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	e.settle(t, time.Minute)
	e.exec(t, `UPDATE patients SET dnd = TRUE, updated_at = CURRENT_TIMESTAMP`)
	e.syncLocation(t, tasks.NewPatientsSyncTask, "loc1")
	e.settle(t, time.Minute)
	if rows := e.inbox(t, "loc1"); len(rows) != 0 {
		t.Fatalf("inbox after the syncs: %+v", rows)
	}
	contactID := e.patientState(t, "loc1", "p-0000").ContactID

	// The contact as GHL's last webhook of it showed it.
	var last string
	if err := storetest.DB(t, e.DatabaseURL).Raw(`SELECT payload FROM webhook_events WHERE location_id = 'loc1' ORDER BY id DESC LIMIT 1`).
		Scan(&last).Error; err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC().Truncate(time.Millisecond).Add(time.Second)
	process := func(typ string, dnd bool, at time.Time) {
		t.Helper()
		var fields map[string]any
		if err := json.Unmarshal([]byte(last), &fields); err != nil || fields["id"] != contactID {
			t.Fatalf("the last webhook %s: %v", last, err)
		}
		fields["type"], fields["dnd"], fields["timestamp"] = typ, dnd, at.Format("2006-01-02T15:04:05.000Z")
		fields["webhookId"] = fmt.Sprintf("%s-%t-%d", typ, dnd, at.UnixMilli())
		b, _ := json.Marshal(fields)
		ev := &store.WebhookEvent{WebhookID: fmt.Sprintf("%s-%t-%d", typ, dnd, at.UnixMilli()), Type: typ, LocationID: "loc1",
			Payload: string(b), OccurredAt: &at, ReceivedAt: time.Now().UTC()}
		if _, err := e.Store.RecordWebhookEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
		if _, err := e.inbound.Inbound.Process(ctx, ev.ID); err != nil {
			t.Fatal(err)
		}
	}
	// The DND's webhook first, then the tag's of the same millisecond,
	// showing DND off as it was before.
	process("ContactDndUpdate", true, at)
	process("ContactTagUpdate", false, at)
	if rows := e.inbox(t, "loc1"); len(rows) != 0 {
		t.Fatalf("a webhook of the same instant as ghlsync's own made %d rows: %+v", len(rows), rows)
	}
	process("ContactDndUpdate", false, at.Add(time.Millisecond))
	rows := e.inbox(t, "loc1")
	if len(rows) != 1 {
		t.Fatalf("a staff change a millisecond later made %d rows, want 1: %+v", len(rows), rows)
	}
	if got := changesOf(t, rows[0]); len(got) != 1 || got["dnd"] != false {
		t.Fatalf("changes: %v, want dnd false", got)
	}
}
