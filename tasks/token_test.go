package tasks_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/refresh"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/tasks"
)

// capturingEnqueuer keeps the tasks a fan-out enqueues, to be run by hand.
type capturingEnqueuer struct {
	mu    sync.Mutex
	tasks []*asynq.Task
}

func (c *capturingEnqueuer) EnqueueContext(_ context.Context, t *asynq.Task, _ ...asynq.Option) (*asynq.TaskInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tasks = append(c.tasks, t)
	return &asynq.TaskInfo{ID: t.Type() + "-" + string(rune('a'+len(c.tasks))), Queue: tasks.QueueCritical}, nil
}

// An enqueuer whose clock is 2 minutes ahead asks for 20 forced refreshes
// of one location before the worker runs any: the first refresh answers
// them all, so GHL sees one call. The requests' time comes from Redis, not
// from the enqueuer's clock, which would have put every request after the
// refresh that answers it.
func TestSkewedEnqueuerBurstCostsOneCall(t *testing.T) {
	t.Parallel()
	stack := storetest.NewStack(t, ghltest.Options{})
	stack.Connect(t, "loc1", time.Now().Add(time.Hour))
	rc := stack.Redis(t)
	client, err := ghl.NewClient(ghl.Config{BaseURL: stack.Fake.URL, ClientID: storetest.ClientID, ClientSecret: storetest.ClientSecret})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(&testenv.Buffer{}, nil))
	refresher := &refresh.Refresher{Store: stack.Store, GHL: client.OAuth, Redis: rc,
		Cipher: testenv.Cipher(t, stack.Key), Window: 4 * time.Hour, Log: log}
	enq := &capturingEnqueuer{}
	ahead := clock.NewFake(time.Now().Add(2 * time.Minute))
	enqueuer := &tasks.TokenHandlers{Refresher: refresher, Locations: stack.Store, Enqueuer: enq, Redis: rc,
		Window: 4 * time.Hour, Clock: ahead, Log: log}
	if err := enqueuer.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	fanOut, err := tasks.NewRefreshDueTask(true, true, 0)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if err := enqueuer.HandleRefreshDue(ctx, fanOut); err != nil {
			t.Fatal(err)
		}
	}
	if len(enq.tasks) != 20 {
		t.Fatalf("the fan-outs enqueued %d refreshes, want 20", len(enq.tasks))
	}
	for _, task := range enq.tasks {
		var p tasks.RefreshBatchPayload
		if err := json.Unmarshal(task.Payload(), &p); err != nil || task.Type() != tasks.TypeTokenRefreshBatch {
			t.Fatalf("%s %s: %v", task.Type(), task.Payload(), err)
		}
		if !p.RequestedAt.Before(ahead.Now().Add(-time.Minute)) {
			t.Errorf("requested_at %s is on the enqueuer's clock (%s), not the shared one", p.RequestedAt, ahead.Now())
			break
		}
	}

	// The worker, on the real clock, runs the burst.
	worker := &tasks.TokenHandlers{Refresher: refresher, Locations: stack.Store, Enqueuer: enq, Redis: rc, Window: 4 * time.Hour, Log: log}
	for _, task := range enq.tasks {
		if err := worker.HandleRefreshBatch(ctx, task); err != nil {
			t.Fatal(err)
		}
	}
	if calls := stack.Fake.TokenCalls("loc1"); calls != 1 {
		t.Fatalf("a burst of 20 refreshes cost %d GHL token calls, want 1", calls)
	}
	if !stack.HoldsCurrent(t, "loc1") {
		t.Fatal("the database does not hold the current token")
	}
}

// A batch refreshes each of its locations; one that GHL refused for the
// moment fails the task, one that needs reconnecting does not, and the
// retry spends no second call on those already refreshed.
func TestRefreshBatchRetriesOnlyWhatFailed(t *testing.T) {
	t.Parallel()
	stack := storetest.NewStack(t, ghltest.Options{})
	locs := []string{"b1", "b2", "b3", "b4"}
	for _, loc := range locs {
		stack.Connect(t, loc, time.Now().Add(time.Hour))
	}
	ctx := context.Background()
	if err := stack.Store.SetStatus(ctx, "b4", store.StatusNeedsReauth, "reconnect"); err != nil {
		t.Fatal(err)
	}
	rc := stack.Redis(t)
	client, err := ghl.NewClient(ghl.Config{BaseURL: stack.Fake.URL, ClientID: storetest.ClientID, ClientSecret: storetest.ClientSecret})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(&testenv.Buffer{}, nil))
	h := &tasks.TokenHandlers{Refresher: &refresh.Refresher{Store: stack.Store, GHL: client.OAuth, Redis: rc,
		Cipher: testenv.Cipher(t, stack.Key), Window: 4 * time.Hour, Log: log}, Locations: stack.Store, Redis: rc, Window: 4 * time.Hour, Log: log}
	requested, err := refresh.SharedTime(ctx, rc)
	if err != nil {
		t.Fatal(err)
	}
	task, err := tasks.NewRefreshBatchTask(locs, false, requested, true)
	if err != nil {
		t.Fatal(err)
	}
	stack.Fake.InjectFault(ghltest.Fault{Path: "/oauth/token", Location: "b3", Status: http.StatusServiceUnavailable, Times: 1})
	if err := h.HandleRefreshBatch(ctx, task); err == nil || !strings.Contains(err.Error(), "1 of 4 locations") {
		t.Fatalf("batch with one refusal = %v, want it failed for 1 of 4", err)
	}
	for _, loc := range []string{"b1", "b2"} {
		if !stack.HoldsCurrent(t, loc) {
			t.Fatalf("%s: not refreshed by the first run", loc)
		}
	}
	if err := h.HandleRefreshBatch(ctx, task); err != nil {
		t.Fatalf("retry: %v", err)
	}
	// The fake counts the calls it acted on: b3's refused one is not.
	for loc, want := range map[string]int{"b1": 1, "b2": 1, "b3": 1, "b4": 0} {
		if got := stack.Fake.TokenCalls(loc); got != want {
			t.Errorf("%s: %d token calls, want %d", loc, got, want)
		}
	}
	if !stack.HoldsCurrent(t, "b3") {
		t.Error("b3: not refreshed by the retry")
	}
}
