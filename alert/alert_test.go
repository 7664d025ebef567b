package alert_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghlsync/ghlsync/alert"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/syncer"
)

// receiver is a test webhook receiver: it records every request and
// answers 500 to the first failFirst of them.
type receiver struct {
	*httptest.Server
	failFirst int

	mu       sync.Mutex
	requests []request
}

type request struct {
	Key    string // Idempotency-Key
	Body   []byte
	Status int // what the receiver answered
}

func newReceiver(t *testing.T, failFirst int) *receiver {
	t.Helper()
	r := &receiver{failFirst: failFirst}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		status := http.StatusOK
		if len(r.requests) < r.failFirst {
			status = http.StatusInternalServerError
		}
		r.requests = append(r.requests, request{Key: req.Header.Get("Idempotency-Key"), Body: body, Status: status})
		r.mu.Unlock()
		w.WriteHeader(status)
		if status != http.StatusOK {
			io.WriteString(w, "receiver down for maintenance")
		}
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) all() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.requests)
}

// taken returns the payloads the receiver answered 2xx, in order.
func (r *receiver) taken(t *testing.T) []alert.Payload {
	t.Helper()
	var out []alert.Payload
	for _, req := range r.all() {
		if req.Status != http.StatusOK {
			continue
		}
		var p alert.Payload
		if err := json.Unmarshal(req.Body, &p); err != nil {
			t.Fatalf("the receiver got %q: %v", req.Body, err)
		}
		out = append(out, p)
	}
	return out
}

type bundle struct {
	stack *storetest.Stack
	clock *clock.Fake
	logs  *testenv.Buffer
}

// setup returns an evaluator on a store of its own with the given
// receivers, on a fake clock.
func setup(t *testing.T, receivers ...alert.Receiver) (*alert.Evaluator, *bundle) {
	t.Helper()
	stack := storetest.NewStack(t, ghltest.Options{})
	b := &bundle{stack: stack, clock: clock.NewFake(time.Now().UTC().Truncate(time.Second)), logs: &testenv.Buffer{}}
	e := &alert.Evaluator{Store: stack.Store, Receivers: receivers, Clock: b.clock, PublicURL: "https://ghlsync.example.com",
		Log: slog.New(slog.NewTextHandler(b.logs, nil))}
	return e, b
}

func evaluate(t *testing.T, e *alert.Evaluator) alert.Result {
	t.Helper()
	res, err := e.Evaluate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func setStatus(t *testing.T, st *store.Store, loc string, s store.Status) {
	t.Helper()
	if err := st.SetStatus(context.Background(), loc, s, ""); err != nil {
		t.Fatal(err)
	}
}

func TestConditions(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) *time.Time { t := now.Add(-d); return &t }
	f := &alert.Facts{
		Credentials: []store.Credential{
			{LocationID: "ok", UserType: store.UserTypeLocation, Status: store.StatusActive, ExpiresAt: now.Add(3 * time.Hour)},
			{LocationID: "revoked", UserType: store.UserTypeLocation, Status: store.StatusNeedsReauth, ExpiresAt: now.Add(-time.Hour),
				LastError: "invalid_grant"},
			{LocationID: "agency", UserType: store.UserTypeCompany, Status: store.StatusUninstalled, ExpiresAt: now.Add(time.Hour)},
			{LocationID: "paused", UserType: store.UserTypeLocation, Status: store.StatusInactive, ExpiresAt: now.Add(time.Hour)},
			// A status this code does not know yet (another issue adds
			// one for missing scopes): it has a problem, so it alerts.
			{LocationID: "scoped", UserType: store.UserTypeLocation, Status: "missing_scope", ExpiresAt: now.Add(time.Hour)},
			{LocationID: "expiring", UserType: store.UserTypeLocation, Status: store.StatusActive, ExpiresAt: now.Add(40 * time.Minute)},
			{LocationID: "expired", UserType: store.UserTypeLocation, Status: store.StatusActive, ExpiresAt: now.Add(-5 * time.Minute)},
			// Tokens that live an hour (the sandbox's), refreshed 10 min
			// ago, then 40 min ago: only half the lifetime alerts.
			{LocationID: "short-fresh", UserType: store.UserTypeLocation, Status: store.StatusActive, ExpiresAt: now.Add(50 * time.Minute),
				RefreshedAt: ago(10 * time.Minute)},
			{LocationID: "short-stale", UserType: store.UserTypeLocation, Status: store.StatusActive, ExpiresAt: now.Add(20 * time.Minute),
				RefreshedAt: ago(40 * time.Minute)},
		},
		Syncs: []alert.SyncFacts{
			{Location: "ok", Kind: syncer.KindPatients, Failures: 3, LastError: "GHL unavailable"},
			{Location: "ok", Kind: syncer.KindAppointments, Failures: 2},
		},
	}
	for _, s := range []store.Schedule{
		{Name: "late", TaskType: "t", EverySeconds: 600, LastRunAt: ago(21 * time.Minute), ChangedAt: now.Add(-48 * time.Hour)},
		{Name: "on-time", TaskType: "t", EverySeconds: 600, LastRunAt: ago(19 * time.Minute), ChangedAt: now.Add(-48 * time.Hour)},
		// Twice 1 s is well within a scheduler's ordinary delay.
		{Name: "fast", TaskType: "t", EverySeconds: 1, LastRunAt: ago(90 * time.Second), ChangedAt: now.Add(-48 * time.Hour)},
		// Enabled again a minute ago after a day off: not late.
		{Name: "re-enabled", TaskType: "t", EverySeconds: 600, LastRunAt: ago(24 * time.Hour), ChangedAt: now.Add(-time.Minute)},
		// A daily cron that last ran 26 h ago, due 2 h ago: not yet.
		{Name: "daily-due", TaskType: "t", Cron: "0 10 * * *", LastRunAt: ago(26 * time.Hour), NextRunAt: ago(2 * time.Hour), ChangedAt: now.Add(-72 * time.Hour)},
		// One that last ran 49 h ago, due 25 h ago: late.
		{Name: "daily", TaskType: "t", Cron: "0 11 * * *", LastRunAt: ago(49 * time.Hour), NextRunAt: ago(25 * time.Hour), ChangedAt: now.Add(-72 * time.Hour)},
		// A cron no scheduler has seen (inserted by SQL): no interval.
		{Name: "unknown", TaskType: "t", Cron: "0 12 * * *", ChangedAt: now.Add(-72 * time.Hour)},
	} {
		if sf, ok := alert.ScheduleFactsOf(s, now); ok {
			f.Schedules = append(f.Schedules, sf)
		} else if s.Name != "unknown" {
			t.Errorf("%s: no interval", s.Name)
		}
	}

	e := &alert.Evaluator{}
	var got []string
	for _, c := range e.Conditions(f, now) {
		got = append(got, c.Kind+" "+c.Subject)
	}
	want := []string{
		"location_problem revoked/needs_reauth",
		"location_problem agency/uninstalled",
		"location_problem paused/inactive",
		"location_problem scoped/missing_scope",
		"token_expiring expiring",
		"token_expiring expired",
		"token_expiring short-stale",
		"sync_failing ok/patients",
		"schedule_late late",
		"schedule_late daily",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("conditions (-want +got):\n%s", diff)
	}

	e.SyncFailures, e.ExpiresWithin = 2, 30*time.Minute
	got = got[:0]
	for _, c := range e.Conditions(f, now) {
		if c.Kind == alert.KindSyncFailing || c.Kind == alert.KindTokenExpiring {
			got = append(got, c.Kind+" "+c.Subject)
		}
	}
	want = []string{"token_expiring expired", "token_expiring short-stale", "sync_failing ok/patients", "sync_failing ok/appointments"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("with 2 failures and 30 min (-want +got):\n%s", diff)
	}
}

// Three evaluators, each on a connection pool of its own as three workers
// are, evaluate at the same moment, round after round, while a location
// is revoked and reconnected: the receiver gets each firing and each
// recovery exactly once.
func TestThreeEvaluatorsDeliverEachEpisodeOnce(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, 0)
	receivers := alert.NewReceivers([]string{rcv.URL + "/hook"}, nil)
	first, b := setup(t, receivers...)
	b.stack.Connect(t, "loc1", time.Now().Add(10*time.Hour))
	evaluators := []*alert.Evaluator{first}
	for range 2 {
		st, err := store.Open(context.Background(), b.stack.DatabaseURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		e := *first
		e.Store = st
		evaluators = append(evaluators, &e)
	}

	const rounds = 6
	var fired, resolved int
	for round := range rounds {
		status := store.StatusNeedsReauth
		if round%2 == 1 {
			status = store.StatusActive
		}
		setStatus(t, b.stack.Store, "loc1", status)
		start := make(chan struct{})
		results := make([]alert.Result, len(evaluators))
		errs := make([]error, len(evaluators))
		var wg sync.WaitGroup
		for i, e := range evaluators {
			wg.Go(func() {
				<-start
				results[i], errs[i] = e.Evaluate(context.Background())
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, evaluator %d: %v", round, i, err)
			}
		}
		var f, r, sent int
		for _, res := range results {
			f, r, sent = f+len(res.Fired), r+len(res.Resolved), sent+res.Sent
		}
		if round%2 == 0 && (f != 1 || r != 0) || round%2 == 1 && (f != 0 || r != 1) {
			t.Fatalf("round %d: %d fired and %d resolved among the evaluators, want one %s: %+v", round, f, r, status, results)
		}
		if sent != 1 {
			t.Fatalf("round %d: %d deliveries sent among the evaluators, want 1: %+v", round, sent, results)
		}
		fired, resolved = fired+f, resolved+r
	}

	var got []string
	for _, p := range rcv.taken(t) {
		got = append(got, fmt.Sprintf("%s %s %s episode %d", p.Event, p.Kind, p.Subject, p.Episode))
	}
	want := []string{
		"firing location_problem loc1/needs_reauth episode 1", "resolved location_problem loc1/needs_reauth episode 1",
		"firing location_problem loc1/needs_reauth episode 2", "resolved location_problem loc1/needs_reauth episode 2",
		"firing location_problem loc1/needs_reauth episode 3", "resolved location_problem loc1/needs_reauth episode 3",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the receiver got (-want +got):\n%s", diff)
	}
	if n := len(rcv.all()); n != rounds {
		t.Errorf("the receiver was called %d times, want %d", n, rounds)
	}
}

// A receiver that answers 500 twice gets the alert at the third attempt,
// once, every attempt under the same id, and then the recovery; the
// failures are recorded and logged without the receiver's URL.
func TestDeliveryRetriedUntilTheReceiverTakesIt(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, 2)
	const secret = "T0001/B0001/s3cretW3bh00kPath"
	e, b := setup(t, alert.NewReceivers(nil, []string{rcv.URL + "/services/" + secret})...)
	b.stack.Connect(t, "loc1", time.Now().Add(10*time.Hour))
	setStatus(t, b.stack.Store, "loc1", store.StatusNeedsReauth)

	res := evaluate(t, e)
	if len(res.Fired) != 1 || res.Sent != 0 || res.Failed != 1 {
		t.Fatalf("first evaluation: %+v, want one fired and one failed attempt", res)
	}
	// Not due again before its backoff: at most RetryBase.
	if res := evaluate(t, e); res.Failed+res.Sent != 0 {
		t.Fatalf("an evaluation at the same moment attempted again: %+v", res)
	}
	for attempt := 2; attempt <= 3; attempt++ {
		b.clock.Advance(alert.RetryBase << (attempt - 2))
		res = evaluate(t, e)
		if attempt == 2 && res.Failed != 1 || attempt == 3 && res.Sent != 1 {
			t.Fatalf("attempt %d: %+v", attempt, res)
		}
	}
	b.clock.Advance(time.Hour)
	if res := evaluate(t, e); res.Sent+res.Failed != 0 {
		t.Fatalf("attempted again after it was taken: %+v", res)
	}

	reqs := rcv.all()
	if len(reqs) != 3 || reqs[0].Key == "" || reqs[0].Key != reqs[1].Key || reqs[1].Key != reqs[2].Key {
		t.Fatalf("want three attempts with one idempotency key, got %+v", reqs)
	}
	var slack map[string]string
	if err := json.Unmarshal(reqs[2].Body, &slack); err != nil || !strings.HasPrefix(slack["text"], "*[FIRING]* Location loc1 is needs_reauth") ||
		!strings.Contains(slack["text"], store.ConnectPath) || !strings.Contains(slack["text"], "<https://ghlsync.example.com/alerts|") || len(slack) != 1 {
		t.Errorf("the Slack receiver got %s (%v)", reqs[2].Body, err)
	}

	deliveries := deliveriesOf(t, b.stack.Store)
	if len(deliveries) != 1 {
		t.Fatalf("deliveries: %+v", deliveries)
	}
	d := deliveries[0]
	if d.State != store.DeliverySent || d.Attempts != 3 || d.SentAt == nil || !strings.Contains(d.LastError, "500") ||
		!strings.Contains(d.LastError, "receiver down for maintenance") || d.ReceiverName != "slack "+rcv.URL+"/xxxxx" {
		t.Errorf("delivery %+v", d)
	}
	for what, text := range map[string]string{"logs": b.logs.String(), "last error": d.LastError, "receiver name": d.ReceiverName} {
		if strings.Contains(text, secret) {
			t.Errorf("the %s hold the webhook's secret path:\n%s", what, text)
		}
	}
	if !strings.Contains(b.logs.String(), "alert delivery failed") {
		t.Errorf("the failed attempts are not logged:\n%s", b.logs)
	}

	// The recovery goes to the receiver the alert went to.
	setStatus(t, b.stack.Store, "loc1", store.StatusActive)
	res = evaluate(t, e)
	if len(res.Resolved) != 1 || res.Sent != 1 {
		t.Fatalf("after reconnecting: %+v", res)
	}
	if last := rcv.all()[3]; !strings.Contains(string(last.Body), "[RESOLVED]") || last.Key == reqs[0].Key {
		t.Errorf("the recovery: %s (key %s)", last.Body, last.Key)
	}
}

func deliveriesOf(t *testing.T, st *store.Store) []store.AlertDelivery {
	t.Helper()
	alerts, err := st.RecentAlerts(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, a := range alerts {
		ids = append(ids, a.ID)
	}
	byAlert, err := st.AlertDeliveries(context.Background(), ids)
	if err != nil {
		t.Fatal(err)
	}
	var out []store.AlertDelivery
	for _, id := range ids {
		out = append(out, byAlert[id]...)
	}
	return out
}

// A recovery never reaches a receiver before the alert it resolves: while
// the firing notification is still being retried, the recovery waits.
func TestRecoveryWaitsForTheAlert(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, 2)
	e, b := setup(t, alert.NewReceivers([]string{rcv.URL}, nil)...)
	b.stack.Connect(t, "loc1", time.Now().Add(10*time.Hour))
	setStatus(t, b.stack.Store, "loc1", store.StatusNeedsReauth)
	evaluate(t, e) // fired; the first attempt fails
	setStatus(t, b.stack.Store, "loc1", store.StatusActive)
	if res := evaluate(t, e); len(res.Resolved) != 1 || res.Sent+res.Failed != 0 {
		t.Fatalf("resolved while the alert waits for its retry: %+v, want no attempt", res)
	}
	for range 5 {
		b.clock.Advance(alert.RetryMax)
		evaluate(t, e)
	}
	var got []string
	for _, p := range rcv.taken(t) {
		got = append(got, p.Event)
	}
	if diff := cmp.Diff([]string{"firing", "resolved"}, got); diff != "" {
		t.Errorf("the receiver took (-want +got):\n%s", diff)
	}
	if p := rcv.taken(t)[1]; p.ResolvedAt == nil || p.Labels["location_id"] != "loc1" || p.Labels["status"] != "needs_reauth" ||
		p.URL != "https://ghlsync.example.com/alerts" || p.Episode != 1 {
		t.Errorf("the recovery's payload: %+v", p)
	}
}

// An attempt in flight holds its delivery: another evaluator does not send
// it again until the attempt's lease has passed (its sender died).
func TestAnAttemptInFlightIsNotRepeated(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, 0)
	e, b := setup(t, alert.NewReceivers([]string{rcv.URL}, nil)...)
	b.stack.Connect(t, "loc1", time.Now().Add(10*time.Hour))
	setStatus(t, b.stack.Store, "loc1", store.StatusUninstalled)
	// Another worker opened the episode and took its delivery, then died.
	ctx := context.Background()
	a := &store.Alert{Kind: alert.KindLocationProblem, Subject: "loc1/uninstalled", Episode: 1, Summary: "s", StartedAt: b.clock.Now()}
	r := e.Receivers[0]
	if ok, err := b.stack.Store.FireAlert(ctx, a, []store.AlertReceiver{{Key: r.Key(), Name: r.Name()}}); err != nil || !ok {
		t.Fatalf("fire: %v %v", ok, err)
	}
	d := deliveriesOf(t, b.stack.Store)[0]
	if ok, err := b.stack.Store.ClaimAlertDelivery(ctx, d.ID, b.clock.Now(), b.clock.Now().Add(30*time.Second)); err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}

	b.clock.Advance(29 * time.Second)
	if res := evaluate(t, e); len(res.Fired) != 0 || res.Sent+res.Failed != 0 || len(rcv.all()) != 0 {
		t.Fatalf("fired or sent while another attempt holds the delivery: %+v", res)
	}
	b.clock.Advance(2 * time.Second)
	if res := evaluate(t, e); res.Sent != 1 {
		t.Fatalf("not sent once the lease passed: %+v", res)
	}
	if d := deliveriesOf(t, b.stack.Store)[0]; d.Attempts != 2 || d.State != store.DeliverySent {
		t.Errorf("delivery %+v", d)
	}
}

// A receiver that never takes the alert is given up after GiveUpAfter.
func TestDeliveryGivenUpAfterADay(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, 1<<30)
	e, b := setup(t, alert.NewReceivers([]string{rcv.URL}, nil)...)
	var outcomes []string
	e.ObserveDelivery = func(typ, outcome string) { outcomes = append(outcomes, typ+" "+outcome) }
	b.stack.Connect(t, "loc1", time.Now().Add(10*time.Hour))
	setStatus(t, b.stack.Store, "loc1", store.StatusNeedsReauth)
	evaluate(t, e)
	for elapsed := time.Duration(0); elapsed <= alert.GiveUpAfter; elapsed += alert.RetryMax {
		b.clock.Advance(alert.RetryMax)
		evaluate(t, e)
	}
	d := deliveriesOf(t, b.stack.Store)[0]
	if d.State != store.DeliveryFailed || d.Attempts < 100 {
		t.Errorf("after a day: %+v", d)
	}
	if outcomes[len(outcomes)-1] != "webhook gave_up" || outcomes[0] != "webhook error" {
		t.Errorf("observed %v", outcomes[max(0, len(outcomes)-3):])
	}
	if n := len(rcv.all()); n != d.Attempts {
		t.Errorf("%d requests, %d attempts recorded", n, d.Attempts)
	}
}

// What a receiver's URL holds is its credential: no way of printing a
// Receiver, and no error of a failed delivery, shows it.
func TestReceiverNeverShowsItsURL(t *testing.T) {
	t.Parallel()
	const secret = "xoxb-9f8e7d6c5b4a"
	ln := httptest.NewServer(http.NotFoundHandler())
	addr := ln.Listener.Addr().String()
	ln.Close() // nothing listens any more: the attempt fails to connect
	rs := alert.NewReceivers([]string{"http://" + addr + "/hook?token=" + secret}, []string{"https://user:pw@hooks.example.com/services/" + secret})
	var logs strings.Builder
	slog.New(slog.NewTextHandler(&logs, nil)).Info("receivers", "first", rs[0], "second", rs[1])
	for _, text := range []string{fmt.Sprint(rs), fmt.Sprintf("%+v %#v", rs[0], rs[1]), logs.String(), rs[0].Key(), rs[1].Name()} {
		if strings.Contains(text, secret) || strings.Contains(text, "pw@") {
			t.Errorf("shows the secret: %s", text)
		}
	}
	if rs[1].Name() != "slack https://hooks.example.com/xxxxx" || !strings.HasPrefix(rs[1].Key(), "slack:") {
		t.Errorf("name %q, key %q", rs[1].Name(), rs[1].Key())
	}

	e, b := setup(t, rs[0])
	b.stack.Connect(t, "loc1", time.Now().Add(10*time.Hour))
	setStatus(t, b.stack.Store, "loc1", store.StatusNeedsReauth)
	if res := evaluate(t, e); res.Failed != 1 {
		t.Fatalf("%+v", res)
	}
	d := deliveriesOf(t, b.stack.Store)[0]
	if d.LastError == "" || strings.Contains(d.LastError, secret) || strings.Contains(b.logs.String(), secret) {
		t.Errorf("last error %q; logs:\n%s", d.LastError, b.logs)
	}
}

// The generic webhook's payload: everything the README documents, and no
// token.
func TestWebhookPayload(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, 0)
	e, b := setup(t, alert.NewReceivers([]string{rcv.URL}, nil)...)
	b.stack.Connect(t, "loc1", b.clock.Now().Add(2*time.Hour))
	toks, _ := b.stack.StoredTokens(t, "loc1")
	if res := evaluate(t, e); res.Holding != 0 {
		t.Fatalf("a fresh token alerts: %+v", res)
	}
	b.clock.Advance(90 * time.Minute)
	evaluate(t, e)
	got := rcv.taken(t)
	if len(got) != 1 {
		t.Fatalf("got %+v", got)
	}
	p := got[0]
	want := alert.Payload{
		ID: p.ID, Event: "firing", Kind: alert.KindTokenExpiring, Subject: "loc1", Episode: 1,
		Labels:  map[string]string{"location_id": "loc1"},
		Summary: "Location loc1: its token expires in 30m and no refresh renewed it", Detail: p.Detail,
		StartedAt: b.clock.Now(), URL: "https://ghlsync.example.com/alerts",
	}
	if diff := cmp.Diff(want, p); diff != "" || !strings.HasPrefix(p.ID, "ghlsync-alert-") || !strings.Contains(p.Detail, "REFRESH_WINDOW") {
		t.Errorf("payload (-want +got):\n%s", diff)
	}
	body := string(rcv.all()[0].Body)
	for _, key := range []string{`"id"`, `"event"`, `"kind"`, `"subject"`, `"episode"`, `"labels"`, `"summary"`, `"detail"`, `"started_at"`, `"resolved_at":null`, `"url"`} {
		if !strings.Contains(body, key) {
			t.Errorf("the body lacks %s: %s", key, body)
		}
	}
	if strings.Contains(body, toks.AccessToken) || strings.Contains(body, toks.RefreshToken) {
		t.Errorf("the body holds a token: %s", body)
	}
}

// A sync failing its runs in a row, and a schedule that stopped running,
// alert from what the database holds, and recover.
func TestSyncAndScheduleConditionsFromTheDatabase(t *testing.T) {
	t.Parallel()
	e, b := setup(t)
	ctx := context.Background()
	st := b.stack.Store
	b.stack.Connect(t, "loc1", time.Now().Add(10*time.Hour))
	run := func(outcome string) {
		t.Helper()
		r := &store.SyncRun{Kind: syncer.KindPatients, LocationID: "loc1"}
		if err := st.StartSyncRun(ctx, r); err != nil {
			t.Fatal(err)
		}
		r.Outcome, r.Error = outcome, ""
		if outcome == syncer.OutcomeError {
			r.Error = "GHL answered 503"
		}
		if err := st.FinishSyncRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	run(syncer.OutcomeCompleted)
	run(syncer.OutcomeError)
	run(syncer.OutcomeError)
	// A run in progress is neither a failure nor a success.
	if err := st.StartSyncRun(ctx, &store.SyncRun{Kind: syncer.KindPatients, LocationID: "loc1"}); err != nil {
		t.Fatal(err)
	}
	if res := evaluate(t, e); res.Holding != 0 {
		t.Fatalf("two failures: %+v", res)
	}
	run(syncer.OutcomeError)
	res := evaluate(t, e)
	if diff := cmp.Diff([]string{"sync_failing loc1/patients"}, res.Fired); diff != "" {
		t.Fatalf("three failures (-want +got):\n%s", diff)
	}
	alerts, _ := st.RecentAlerts(ctx, 1)
	if a := alerts[0]; a.Summary != "Location loc1: the patients sync failed 3 runs in a row" || a.Detail != "last error: GHL answered 503" {
		t.Errorf("alert %+v", a)
	}
	run(syncer.OutcomeCompleted)
	if res := evaluate(t, e); len(res.Resolved) != 1 {
		t.Fatalf("after a completed run: %+v", res)
	}

	if _, err := st.CreateSchedule(ctx, store.Schedule{Name: "token-refresh", TaskType: "ghl:token:refresh-due", EverySeconds: 600,
		Enabled: true, ChangedAt: b.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(20 * time.Minute)
	if res := evaluate(t, e); res.Holding != 0 {
		t.Fatalf("after twice its interval exactly: %+v", res)
	}
	b.clock.Advance(time.Second)
	if res := evaluate(t, e); len(res.Fired) != 1 || res.Fired[0] != "schedule_late token-refresh" {
		t.Fatalf("past twice its interval: %+v", res)
	}
	ran := b.clock.Now()
	if _, err := st.UpdateSchedule(ctx, "token-refresh", func(s *store.Schedule) error { s.LastRunAt = &ran; return nil }); err != nil {
		t.Fatal(err)
	}
	if res := evaluate(t, e); len(res.Resolved) != 1 {
		t.Fatalf("after it ran: %+v", res)
	}
}

// A receiver that refuses is tried once per evaluation, whatever it has
// pending, while another receiver gets every alert; a URL configured twice
// is one receiver.
func TestARefusingReceiverHoldsNoOne(t *testing.T) {
	t.Parallel()
	down, up := newReceiver(t, 1<<30), newReceiver(t, 0)
	receivers := alert.NewReceivers([]string{down.URL, up.URL, up.URL}, nil)
	if len(receivers) != 2 {
		t.Fatalf("receivers %v, want the repeated URL once", receivers)
	}
	e, b := setup(t, receivers...)
	for _, loc := range []string{"loc1", "loc2", "loc3"} {
		b.stack.Connect(t, loc, time.Now().Add(10*time.Hour))
		setStatus(t, b.stack.Store, loc, store.StatusNeedsReauth)
	}
	res := evaluate(t, e)
	if len(res.Fired) != 3 || res.Sent != 3 || res.Failed != 1 {
		t.Fatalf("%+v, want 3 fired, 3 sent and one refused attempt", res)
	}
	if n, m := len(down.all()), len(up.taken(t)); n != 1 || m != 3 {
		t.Errorf("the refusing receiver was tried %d times, the other took %d", n, m)
	}
}
