package app_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ghlsync/ghlsync/alert"
	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/refresh"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/tasks"
)

// hook is a test alert receiver: it records every request, and answers
// 500 to the first failFirst.
type hook struct {
	*httptest.Server
	failFirst int

	mu   sync.Mutex
	reqs []hookRequest
}

type hookRequest struct {
	key, body string
	status    int
}

func newHook(t *testing.T, failFirst int) *hook {
	h := &hook{failFirst: failFirst}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		status := http.StatusOK
		if len(h.reqs) < h.failFirst {
			status = http.StatusInternalServerError
		}
		h.reqs = append(h.reqs, hookRequest{key: r.Header.Get("Idempotency-Key"), body: string(b), status: status})
		h.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hook) requests() []hookRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.reqs)
}

// taken lists the notifications the receiver answered 2xx, as "event key".
func (h *hook) taken() []string {
	var out []string
	for _, r := range h.requests() {
		if r.status == http.StatusOK {
			event := "firing"
			if strings.Contains(r.body, `"event":"resolved"`) || strings.Contains(r.body, "[RESOLVED]") {
				event = "resolved"
			}
			out = append(out, event+" "+r.key)
		}
	}
	return out
}

// Issue 12, must-show 2: a location revoked in the fake GHL produces
// exactly one alert at a webhook receiver, from three workers that
// evaluate the alert conditions side by side, and one recovery once it is
// connected again; a Slack-compatible receiver that answers 500 twice
// still gets each exactly once.
func TestRevokedLocationAlertsOnceFromThreeWorkers(t *testing.T) {
	t.Parallel()
	stack := storetest.NewStack(t, ghltest.Options{})
	stack.Fake.AddLocation("loc1", "comp1")
	stack.Fake.AddLocation("loc2", "comp1")
	stack.Connect(t, "loc1", time.Now().Add(10*time.Hour))
	stack.Connect(t, "loc2", time.Now().Add(10*time.Hour))
	webhook, slack := newHook(t, 0), newHook(t, 2)
	const slackSecret = "T0AL3RT/B0AL3RT/xoxSlackW3bhookS3cret"
	cfg, err := config.NewLoader(flag.NewFlagSet("worker", flag.ContinueOnError), testenv.Getenv(stack.Env(
		config.VarAlertWebhook, webhook.URL+"/ghlsync",
		config.VarAlertSlack, slack.URL+"/services/"+slackSecret,
		config.VarWebPublicURL, "http://localhost:8080",
	)), "").Load()
	if err != nil {
		t.Fatal(err)
	}
	cfg.MetricsAddr = ""
	ctx, cancel := context.WithCancel(context.Background())
	var workers []*app.Deps
	var logs []*testenv.Buffer
	done := make(chan error, 3)
	for range 3 {
		buf := &testenv.Buffer{}
		d, err := app.Open(ctx, cfg, app.NewLogger(buf, cfg.LogLevel), true)
		if err != nil {
			t.Fatal(err)
		}
		workers, logs = append(workers, d), append(logs, buf)
		go func() { done <- app.RunWorker(ctx, d, app.WorkerOptions{}) }()
	}
	t.Cleanup(func() {
		cancel()
		for range workers {
			if err := <-done; err != nil {
				t.Errorf("worker: %v", err)
			}
		}
		for _, d := range workers {
			d.Close()
		}
	})
	opt, err := asynq.ParseRedisURI(stack.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	client, insp := asynq.NewClient(opt), asynq.NewInspector(opt)
	t.Cleanup(func() { client.Close(); insp.Close() })

	evaluations := func() []float64 {
		out := make([]float64, len(workers))
		for i, d := range workers {
			out[i] = testutil.ToFloat64(d.Metrics.AlertEvaluations.WithLabelValues("ok"))
		}
		return out
	}
	// evaluateUntil enqueues evaluations, three at a time, until every
	// worker ran at least one and cond holds; an evaluation that fails
	// fails the test.
	evaluateUntil := func(what string, cond func() bool) {
		t.Helper()
		before := evaluations()
		deadline := time.Now().Add(60 * time.Second)
		for {
			var ids []string
			for range 3 {
				task, err := tasks.NewAlertsEvaluateTask()
				if err != nil {
					t.Fatal(err)
				}
				info, err := client.Enqueue(task)
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, info.ID)
			}
			for _, id := range ids {
				wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
				info, err := tasks.WaitTask(wctx, insp, tasks.QueueCritical, id, func(info *asynq.TaskInfo) {
					t.Errorf("evaluation %s failed: %s", id, info.LastErr)
				})
				wcancel()
				if err != nil || info.State != asynq.TaskStateCompleted {
					t.Fatalf("evaluation %s: %v %+v", id, err, info)
				}
			}
			all := true
			for i, n := range evaluations() {
				all = all && n > before[i]
			}
			if all && cond() {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 60 s of evaluations (per worker %v, from %v): not %s; webhook %v, slack %v",
					evaluations(), before, what, webhook.taken(), slack.taken())
			}
		}
	}

	// Revoked in GHL: the next refresh is refused with invalid_grant.
	stack.Fake.Revoke("loc1")
	requestedAt, err := refresh.SharedTime(ctx, workers[0].Redis)
	if err != nil {
		t.Fatal(err)
	}
	task, err := tasks.NewRefreshTask("loc1", true, requestedAt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Enqueue(task); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "loc1 needs_reauth", func() bool {
		c, err := stack.Store.Credential(ctx, "loc1")
		return err == nil && c.Status == store.StatusNeedsReauth
	})

	evaluateUntil("both receivers took the alert", func() bool { return len(webhook.taken()) == 1 && len(slack.taken()) == 1 })
	// More evaluations, on every worker, change nothing.
	evaluateUntil("evaluated again", func() bool { return true })
	if got := webhook.requests(); len(got) != 1 || !strings.Contains(got[0].body, `"kind":"location_problem"`) ||
		!strings.Contains(got[0].body, `"subject":"loc1/needs_reauth"`) || !strings.Contains(got[0].body, `"url":"http://localhost:8080/alerts"`) {
		t.Fatalf("the webhook got %+v, want one alert for loc1", got)
	}
	reqs := slack.requests()
	if len(reqs) != 3 || reqs[0].status != 500 || reqs[1].status != 500 || reqs[2].status != 200 ||
		reqs[0].key != reqs[2].key || !strings.Contains(reqs[2].body, `"text":"*[FIRING]* Location loc1 is needs_reauth`) {
		t.Fatalf("the Slack receiver got %+v, want two refused attempts and one taken, of one alert", reqs)
	}
	firing := webhook.requests()[0].key

	// Connected again through the OAuth flow, as a person would.
	h := app.WebHandler(workers[0])
	rec := request(h, http.MethodGet, "/api/auth/connect", "", nil)
	consent, err := url.Parse(rec.Header().Get("Location"))
	if rec.Code != http.StatusFound || err != nil {
		t.Fatalf("connect: %d %v", rec.Code, err)
	}
	rec = request(h, http.MethodGet, "/api/auth/callback?"+url.Values{
		"code": {stack.Fake.AuthorizeCode("Location", "loc1")}, "state": {consent.Query().Get("state")}}.Encode(), "", nil)
	if rec.Code != http.StatusOK || !stack.HoldsCurrent(t, "loc1") {
		t.Fatalf("callback: %d %s", rec.Code, rec.Body)
	}

	evaluateUntil("both receivers took the recovery", func() bool { return len(webhook.taken()) == 2 && len(slack.taken()) == 2 })
	evaluateUntil("evaluated again", func() bool { return true })
	resolved := strings.Replace(firing, "-firing", "-resolved", 1)
	for name, hk := range map[string]*hook{"webhook": webhook, "slack": slack} {
		if diff := slices.Compare(hk.taken(), []string{"firing " + firing, "resolved " + resolved}); diff != 0 {
			t.Errorf("the %s receiver took %v, want the alert and its recovery once each", name, hk.taken())
		}
	}
	if n := len(slack.requests()); n != 4 {
		t.Errorf("the Slack receiver was called %d times, want 4", n)
	}

	alerts, err := stack.Store.RecentAlerts(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(alerts) != 1 || alerts[0].Subject != "loc1/needs_reauth" || alerts[0].State != store.AlertResolved {
		t.Errorf("alerts: %+v", alerts)
	}
	var all strings.Builder
	for i, l := range logs {
		fmt.Fprintf(&all, "--- worker %d\n%s", i, l)
	}
	if strings.Contains(all.String(), slackSecret) {
		t.Errorf("a worker logged the Slack webhook's URL:\n%s", all.String())
	}
	if !strings.Contains(all.String(), `msg="alert delivery failed" receiver="slack `+slack.URL+`/xxxxx"`) {
		t.Errorf("no worker logged the refused attempts:\n%s", all.String())
	}
	// The evaluations' results say what each did, and hold no receiver's URL.
	completed, err := insp.ListCompletedTasks(tasks.QueueCritical, asynq.PageSize(1000))
	if err != nil {
		t.Fatal(err)
	}
	fired := 0
	for _, ti := range completed {
		if ti.Type != tasks.TypeAlertsEvaluate {
			continue
		}
		var res alert.Result
		if err := json.Unmarshal(ti.Result, &res); err != nil || strings.Contains(string(ti.Result), slackSecret) {
			t.Errorf("evaluation result %s (%v)", ti.Result, err)
		}
		fired += len(res.Fired)
	}
	if fired != 1 {
		t.Errorf("the evaluations' results name %d fired alerts, want 1", fired)
	}
}
