package tasks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/internal/tracing"
	"github.com/ghlsync/ghlsync/refresh"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/tasks"
)

// BenchmarkNoopRefresh runs, on one Redis in one run, rounds of 10,000
// refresh tasks that have nothing to do (their tokens are a day from
// expiry; a task per location, quiet as the schedule's) and of
// 10,000 raw asynq tasks whose handler returns at once, alternating (three
// of each, so that the load of a shared machine falls on both alike), each
// through an asynq server wired as the worker wires its token server (40
// slots at the default token concurrency, the tracing middleware, a 100 ms
// task check), and reports:
//
//   - of-raw: refresh tasks per second ÷ raw tasks per second (issue 15
//     asks ≥ 0.5);
//
//   - ghlsync-redis/task and asynq-redis/task: Redis commands per task
//     sent by ghlsync's code (the refresher) and by asynq's server, counted
//     with a go-redis hook (asynq's include its timed housekeeping);
//
//   - sql/task: SQL statements per task (store.CountStatements).
//
//     go test -run '^$' -bench NoopRefresh -benchtime 1x ./tasks/
func BenchmarkNoopRefresh(b *testing.B) {
	const (
		locations = 1000
		perType   = 10000
		rounds    = 3
		slots     = app.TokenTasksPerCall * app.DefaultTokenConcurrency
	)
	for range b.N {
		b.StopTimer()
		stack := storetest.NewStack(b, ghltest.Options{})
		for i := range locations {
			stack.Connect(b, fmt.Sprintf("loc%04d", i), time.Now().Add(24*time.Hour))
		}
		var sql atomic.Int64
		st, err := store.Open(context.Background(), stack.DatabaseURL, testenv.Cipher(b, stack.Key), store.CountStatements(&sql))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		ours, theirs := &redisCounter{}, &redisCounter{}
		refreshRedis := stack.Redis(b)
		refreshRedis.AddHook(ours)
		client, err := ghl.NewClient(ghl.Config{BaseURL: stack.Fake.URL, ClientID: storetest.ClientID, ClientSecret: storetest.ClientSecret})
		if err != nil {
			b.Fatal(err)
		}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		enq := asynq.NewClientFromRedisClient(stack.Redis(b))
		handlers := &tasks.TokenHandlers{
			Refresher: &refresh.Refresher{Store: st, GHL: client.OAuth, Redis: refreshRedis, Cipher: testenv.Cipher(b, stack.Key), Window: 4 * time.Hour, Log: log},
			Locations: st, Enqueuer: enq, Redis: refreshRedis, Window: 4 * time.Hour, Log: log,
		}
		mux := asynq.NewServeMux()
		mux.HandleFunc(tasks.TypeTokenRefresh, handlers.HandleRefresh)
		mux.HandleFunc("bench:noop", func(context.Context, *asynq.Task) error { return nil })
		mux.Use(tracing.TaskMiddleware(tracing.Off()))

		run := func(name string, enqueue func()) (perSec float64, asynqCmds, ourCmds, stmts float64) {
			enqueue()
			var done atomic.Int64
			var first, last atomic.Int64
			finished := make(chan struct{})
			counting := asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
				first.CompareAndSwap(0, time.Now().UnixNano())
				err := mux.ProcessTask(ctx, t)
				if err != nil {
					b.Errorf("%s: %v", name, err)
				}
				if done.Add(1) == perType {
					last.Store(time.Now().UnixNano())
					close(finished)
				}
				return err
			})
			srvRedis := stack.Redis(b)
			srvRedis.AddHook(theirs)
			srv := asynq.NewServerFromRedisClient(srvRedis, asynq.Config{
				Concurrency: slots, Queues: map[string]int{tasks.QueueCritical: 1},
				TaskCheckInterval: 100 * time.Millisecond, LogLevel: asynq.FatalLevel,
			})
			ours.reset()
			theirs.reset()
			sql.Store(0)
			if err := srv.Start(counting); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			<-finished
			b.StopTimer()
			asynqCmds, ourCmds, stmts = theirs.perTask(perType), ours.perTask(perType), float64(sql.Load())/perType
			srv.Shutdown()
			wall := time.Duration(last.Load() - first.Load())
			perSec = float64(perType) / wall.Seconds()
			b.Logf("%s: %.0f tasks/s, asynq %.2f Redis commands/task, ghlsync %.2f Redis commands/task, %.2f SQL statements/task",
				name, perSec, asynqCmds, ourCmds, stmts)
			return perSec, asynqCmds, ourCmds, stmts
		}
		var raws, refs []float64
		var rawAsynq, refAsynq, refOurs, refSQL float64
		for range rounds {
			r, a, _, _ := run("raw asynq", func() {
				enqueueAll(b, enq, perType, func(int) (*asynq.Task, error) {
					return asynq.NewTask("bench:noop", nil, asynq.Queue(tasks.QueueCritical)), nil
				})
			})
			raws, rawAsynq = append(raws, r), a
			// The refresh tasks are a task per location, as a fan-out
			// that someone waits for enqueues them (the schedule's
			// enqueues batches of tasks.RefreshBatch), quiet as the
			// schedule's: every location's, 10 times over.
			r, refAsynq, refOurs, refSQL = run("no-op refresh", func() {
				requested, err := refresh.SharedTime(context.Background(), refreshRedis)
				if err != nil {
					b.Fatal(err)
				}
				enqueueAll(b, enq, perType, func(i int) (*asynq.Task, error) {
					p, err := json.Marshal(tasks.RefreshPayload{LocationID: fmt.Sprintf("loc%04d", i%locations), RequestedAt: requested, Quiet: true})
					return asynq.NewTask(tasks.TypeTokenRefresh, p, asynq.Queue(tasks.QueueCritical)), err
				})
			})
			refs = append(refs, r)
		}
		raw, ref := median(raws), median(refs)
		fmt.Printf("medians of %d rounds: no-op refresh %.0f tasks/s, raw asynq %.0f tasks/s: of-raw %.2f (want >= 0.5); per refresh task: %.2f ghlsync Redis commands, %.2f SQL statements, %.2f asynq Redis commands (raw: %.2f)\n",
			rounds, ref, raw, ref/raw, refOurs, refSQL, refAsynq, rawAsynq)
		b.ReportMetric(ref/raw, "of-raw")
		b.ReportMetric(ref, "refresh-tasks/s")
		b.ReportMetric(raw, "raw-tasks/s")
		b.ReportMetric(refOurs, "ghlsync-redis/task")
		b.ReportMetric(refAsynq, "asynq-redis/task")
		b.ReportMetric(refSQL, "sql/task")
	}
}

func median(xs []float64) float64 {
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// enqueueAll enqueues n tasks, 32 at a time.
func enqueueAll(b *testing.B, enq *asynq.Client, n int, task func(i int) (*asynq.Task, error)) {
	b.Helper()
	next := make(chan int)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := range next {
				t, err := task(i)
				if err == nil {
					_, err = enq.Enqueue(t)
				}
				if err != nil {
					b.Error(err)
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// redisCounter is a go-redis hook counting the commands a client sends
// (each of a pipeline's).
type redisCounter struct{ n atomic.Int64 }

func (c *redisCounter) reset()                                      { c.n.Store(0) }
func (c *redisCounter) perTask(tasks int) float64                   { return float64(c.n.Load()) / float64(tasks) }
func (c *redisCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *redisCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}
func (c *redisCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}
