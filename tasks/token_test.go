package tasks_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/refresh"
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
		var p tasks.RefreshPayload
		if err := json.Unmarshal(task.Payload(), &p); err != nil {
			t.Fatal(err)
		}
		if !p.RequestedAt.Before(ahead.Now().Add(-time.Minute)) {
			t.Errorf("requested_at %s is on the enqueuer's clock (%s), not the shared one", p.RequestedAt, ahead.Now())
			break
		}
	}

	// The worker, on the real clock, runs the burst.
	worker := &tasks.TokenHandlers{Refresher: refresher, Locations: stack.Store, Enqueuer: enq, Redis: rc, Window: 4 * time.Hour, Log: log}
	for _, task := range enq.tasks {
		if err := worker.HandleRefresh(ctx, task); err != nil {
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
