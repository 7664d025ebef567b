package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/scheduler"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/syncer"
	"github.com/ghlsync/ghlsync/tasks"
)

// BenchmarkRedisMemoryDay runs 24 hours of the default schedules
// (`scheduler setup`) for 10,000 locations in compressed time and reports
// Redis's used_memory at the end, in all and per location (issue 16 asks
// under 100 MB for 10,000 locations).
//
// The clock is a fake one, moved a minute at a time; at each minute the
// real scheduler enqueues the slots due, and an asynq server runs every
// task they lead to before the clock moves on: the real refresh fan-out
// (paging the database, on the fake clock) and the real sync fan-out,
// enqueuing their children with the options the worker gives them. The
// children's own work is what it leaves in Redis, done by stand-ins: a
// refresh moves its location's expiry a day on in the database and writes
// a result only when one is waited for (as HandleRefresh does); a sync
// writes the result of a pass that found nothing changed. asynq expires
// completed tasks on its own, real, clock, so the benchmark does its
// janitor's work on the fake one: at each minute, completed tasks whose
// retention has run out in fake time are deleted (through the Inspector).
// The Redis is a redis-server of the benchmark's own (TEST_REDIS_PORTS),
// so that INFO memory counts its keys alone.
//
//	go test -run '^$' -bench RedisMemoryDay -benchtime 1x -timeout 60m ./app/
//
// GHLSYNC_LOCATIONS runs another number of locations.
func BenchmarkRedisMemoryDay(b *testing.B) {
	locations := 10000
	if v := testenvInt(b, "GHLSYNC_LOCATIONS"); v > 0 {
		locations = v
	}
	for range b.N {
		b.StopTimer()
		url := testenv.RedisServer(b)
		stack := storetest.NewStackOn(b, ghltest.Options{}, func(testing.TB) string { return url })
		rc := stack.Redis(b)
		ctx := context.Background()
		start := time.Now().UTC().Truncate(time.Hour)
		fake := clock.NewFake(start)

		// Each token falls due once in the day: expiries spread over it
		// (a refresh makes the token last a day from then).
		db := storetest.DB(b, stack.DatabaseURL)
		rows := make([]store.Credential, 0, 1000)
		for i := range locations {
			exp := start.Add(time.Duration(i) * 24 * time.Hour / time.Duration(locations))
			rows = append(rows, store.Credential{LocationID: fmt.Sprintf("day%05d", i), UserType: store.UserTypeLocation,
				AccessTokenEnc: "x", RefreshTokenEnc: "x", ExpiresAt: exp, Status: store.StatusActive, TokenVersion: 1})
			if len(rows) == cap(rows) || i == locations-1 {
				if err := db.Create(&rows).Error; err != nil {
					b.Fatal(err)
				}
				rows = rows[:0]
			}
		}
		if _, err := scheduler.Setup(ctx, stack.Store, app.DefaultSchedules, start, false); err != nil {
			b.Fatal(err)
		}
		baseline := usedMemory(b, rc)

		client := asynq.NewClientFromRedisClient(rc)
		insp := asynq.NewInspectorFromRedisClient(rc)
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		sched := &scheduler.Scheduler{Store: stack.Store, Enqueuer: client, Options: scheduler.Options{Clock: fake, Logger: log}}
		tokens := &tasks.TokenHandlers{Locations: stack.Store, Enqueuer: client, Redis: rc, Window: 4 * time.Hour, Clock: fake, Log: log}
		syncs := &tasks.SyncHandlers{Locations: stack.Store, Enqueuer: client}
		syncs.Log = log
		var ran atomic.Int64
		mux := asynq.NewServeMux()
		mux.HandleFunc(tasks.TypeTokenRefreshDue, tokens.HandleRefreshDue)
		refreshed := func(locs ...string) error {
			now := fake.Now().UTC()
			return db.Model(&store.Credential{}).Where("location_id IN ?", locs).
				Updates(map[string]any{"expires_at": now.Add(24 * time.Hour), "refreshed_at": now, "token_version": 2}).Error
		}
		mux.HandleFunc(tasks.TypeTokenRefreshBatch, func(ctx context.Context, t *asynq.Task) error {
			var p tasks.RefreshBatchPayload
			if err := json.Unmarshal(t.Payload(), &p); err != nil {
				return err
			}
			return refreshed(p.LocationIDs...)
		})
		mux.HandleFunc(tasks.TypeTokenRefresh, func(ctx context.Context, t *asynq.Task) error {
			var p tasks.RefreshPayload
			if err := json.Unmarshal(t.Payload(), &p); err != nil {
				return err
			}
			now := fake.Now().UTC()
			if err := refreshed(p.LocationID); err != nil {
				return err
			}
			if !p.Quiet {
				b, _ := json.Marshal(map[string]any{"location_id": p.LocationID, "outcome": "refreshed", "expires_at": now.Add(24 * time.Hour), "expires_in_seconds": 86399})
				t.ResultWriter().Write(b)
			}
			return nil
		})
		syncOne := func(ctx context.Context, t *asynq.Task) error {
			var p tasks.SyncPayload
			if len(t.Payload()) > 0 {
				if err := json.Unmarshal(t.Payload(), &p); err != nil {
					return err
				}
			}
			if p.LocationID == "" {
				return syncs.HandlePatientsSync(ctx, t) // the fan-out: the same for both kinds
			}
			kind := syncer.KindPatients
			if t.Type() == tasks.TypeAppointmentsSync {
				kind = syncer.KindAppointments
			}
			now := fake.Now()
			res := syncer.Result{Kind: kind, Location: p.LocationID, Outcome: "completed", Batch: 1, Failed: []syncer.FailedRecord{},
				StartedAt: now, Duration: "12ms", Cursor: ""}
			b, _ := json.Marshal(res)
			t.ResultWriter().Write(b)
			return nil
		}
		mux.HandleFunc(tasks.TypePatientsSync, syncOne)
		mux.HandleFunc(tasks.TypeAppointmentsSync, syncOne)
		mux.HandleFunc(tasks.TypeAlertsEvaluate, func(ctx context.Context, t *asynq.Task) error {
			t.ResultWriter().Write([]byte(`{"evaluated":4,"firing":[],"delivered":0}`))
			return nil
		})
		counted := asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			ran.Add(1)
			return mux.ProcessTask(ctx, t)
		})
		srv := asynq.NewServerFromRedisClient(rc, asynq.Config{Concurrency: 40,
			Queues:            map[string]int{tasks.QueueCritical: 2, tasks.QueueDefault: 1},
			TaskCheckInterval: 20 * time.Millisecond, LogLevel: asynq.FatalLevel})
		if err := srv.Start(counted); err != nil {
			b.Fatal(err)
		}

		// ticks maps each fake minute to the real time its work ended,
		// for the janitor: a task completed by then, kept R, is expired
		// in fake time once that minute is R behind.
		type tick struct{ fake, realEnd time.Time }
		var ticks []tick
		janitor := func(now time.Time) {
			// The latest minute whose tasks kept ScheduledRetention are
			// past it; tasks kept longer (the scheduled fan-outs, a day)
			// are left.
			var upTo time.Time
			for _, t := range ticks {
				if !t.fake.Add(tasks.ScheduledRetention).Before(now) {
					break
				}
				upTo = t.realEnd
			}
			if upTo.IsZero() {
				return
			}
			for _, q := range []string{tasks.QueueCritical, tasks.QueueDefault} {
				// asynq scores a completed task with when it expires.
				ids, err := rc.ZRangeByScore(ctx, "asynq:{"+q+"}:completed", &redis.ZRangeBy{Min: "-inf",
					Max: strconv.FormatInt(upTo.Add(tasks.ScheduledRetention).Unix()+1, 10)}).Result()
				if err != nil {
					b.Fatal(err)
				}
				for _, id := range ids {
					info, err := insp.GetTaskInfo(q, id)
					if err != nil || info.Retention > tasks.ScheduledRetention {
						continue
					}
					if err := insp.DeleteTask(q, id); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
		idle := func() bool {
			for _, q := range []string{tasks.QueueCritical, tasks.QueueDefault} {
				info, err := insp.GetQueueInfo(q)
				if err != nil {
					return false
				}
				if info.Retry+info.Archived > 0 {
					b.Fatalf("a task of queue %s failed: %d retrying, %d archived", q, info.Retry, info.Archived)
				}
				if info.Pending+info.Active+info.Scheduled > 0 {
					return false
				}
			}
			return true
		}
		b.StartTimer()
		realStart := time.Now()
		for m := 0; m <= 24*60; m++ {
			if _, err := sched.Tick(ctx); err != nil {
				b.Fatal(err)
			}
			testenv.Eventually(b, 10*time.Minute, "the minute's tasks to be done", idle)
			ticks = append(ticks, tick{fake: fake.Now(), realEnd: time.Now()})
			janitor(fake.Now())
			fake.Advance(time.Minute)
		}
		b.StopTimer()
		srv.Shutdown()
		used := usedMemory(b, rc)
		delta := float64(used-baseline) / (1 << 20)
		fmt.Printf("24 h of the default schedules for %d locations (%d tasks, %.0f s): Redis used_memory %.1f MB (%.1f MB above an empty one), %.1f KB per location (want < 100 MB for 10,000)\n",
			locations, ran.Load(), time.Since(realStart).Seconds(), float64(used)/(1<<20), delta, delta*1024/float64(locations))
		b.ReportMetric(float64(used)/(1<<20), "used-MB")
		b.ReportMetric(delta*1024/float64(locations), "KB/location")
		b.ReportMetric(float64(ran.Load()), "tasks")
	}
}

func usedMemory(b *testing.B, rc redis.UniversalClient) int64 {
	b.Helper()
	info, err := rc.Info(context.Background(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatal("no used_memory in INFO memory")
	return 0
}

func testenvInt(b *testing.B, name string) int {
	v := os.Getenv(name)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		b.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}
