package app

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/ops"
	"github.com/ghlsync/ghlsync/internal/tracing"
	"github.com/ghlsync/ghlsync/tasks"
	"github.com/ghlsync/ghlsync/web"
)

// DefaultSyncConcurrency is the number of sync tasks a worker runs at
// once unless told otherwise. A sync task mostly waits on GHL and the
// database; one whose location has spent its rate limit hands its slot
// back (syncer.Engine.HandBackAfter), so in a steady backfill a slot
// serves a location for about the round trips of one window's calls
// every 10 s. What a round of many locations wants is a slot for each at
// its start: a location's windows follow from its first call, so one
// left waiting behind the others' first bursts finishes that much later
// (200 new locations on 2 workers: 34-36 s with 50 slots each, 31.6 s
// with 200, where GHL's limit allows 30). A waiting slot costs a
// goroutine, and a running sync its page of records.
const DefaultSyncConcurrency = 200

// WorkerOptions size a worker.
type WorkerOptions struct {
	// Concurrency is the number of sync tasks run at once;
	// DefaultSyncConcurrency when zero.
	Concurrency int
	// TokenConcurrency is the number of token calls to GHL made at once;
	// TokenTasksPerCall times as many token tasks run at once, in slots of
	// their own that sync work cannot take.
	TokenConcurrency int
	// RecoverEvery is how often interrupted refreshes are looked for.
	RecoverEvery time.Duration
	// SyncRecoverEvery is how often sync passes whose task is gone from
	// the queue are looked for (tasks.SyncRecovery); 30s.
	SyncRecoverEvery time.Duration
}

// WorkerShutdownTimeout is how long a stopping worker waits for its tasks
// to finish before it puts them back in the queue, unless
// WORKER_SHUTDOWN_TIMEOUT says longer: longer than a token call may take
// (refresh.Refresher's CallTimeout, 20 s), so a refresh is never
// abandoned while GHL may answer. A sync hands over within a record's
// round trip (see syncer.Engine.ShuttingDown). A supervisor must allow
// more before it kills the worker: docker-compose.yml's
// stop_grace_period is 30 s, and the Helm chart derives
// WORKER_SHUTDOWN_TIMEOUT from terminationGracePeriodSeconds.
const WorkerShutdownTimeout = config.DefaultWorkerShutdownTimeout

// DefaultTokenConcurrency is the number of token calls to GHL a worker
// makes at once unless told otherwise (WorkerOptions.TokenConcurrency).
const DefaultTokenConcurrency = 20

// TokenTasksPerCall is how many token tasks a worker runs at once per
// token call it makes at once. A refresh spends part of its time on the
// database and Redis (reading the token, marking it in flight, storing
// GHL's answer, the queue's completion and fetch); at 20 ms of GHL latency
// on PostgreSQL that is a third of it, and with a task per call GHL's side
// idled for that third.
const TokenTasksPerCall = 2

// asynqConns is what a worker's Redis pool holds beyond a connection per
// task slot: asynq's own loops (fetching, heartbeats, the forwarder, the
// recoverer, the janitor, cancellation's subscription) and ghlsync's
// (the refresh heartbeat and recovery, the sync recovery).
const asynqConns = 16

// RedisPool is the Redis connections a worker of o may use at once: one
// for each task it runs at once, which waits on at most one at a time,
// and asynqConns. Open the worker's Deps with RedisPool(o.RedisPool()):
// with fewer, a sweep's refreshes queue for connections (go-redis's
// default, ten per CPU, is 20 on two cores for 40 token tasks).
func (o WorkerOptions) RedisPool() int {
	o.defaults()
	return TokenTasksPerCall*o.TokenConcurrency + o.Concurrency + asynqConns
}

func (o *WorkerOptions) defaults() {
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultSyncConcurrency
	}
	if o.TokenConcurrency <= 0 {
		o.TokenConcurrency = DefaultTokenConcurrency
	}
	if o.RecoverEvery <= 0 {
		o.RecoverEvery = time.Second
	}
}

// RunWorker runs the asynq servers until ctx is done, then shuts down.
func RunWorker(ctx context.Context, d *Deps, o WorkerOptions) error {
	o.defaults()
	shutdownTimeout := max(d.Config.WorkerShutdownTimeout, WorkerShutdownTimeout)
	refresher := d.Refresher()
	refresher.CallSlots = o.TokenConcurrency
	// The queue's client and both servers share the process's Redis
	// client, one pool for all: a pool each held four times the idle
	// connections (and their buffers) for no more throughput, since what
	// bounds it is Redis and the worker's CPU. d.Close closes it.
	// The tasks that tasks enqueue carry their trace on.
	client := tracing.Enqueue(d.Tracer, asynq.NewClientFromRedisClient(d.Redis))
	// Closed at shutdown: running syncs hand the rest of their pass over.
	shuttingDown := make(chan struct{})
	syncHandlers := d.SyncHandlers(refresher, client)
	syncHandlers.ShuttingDown = shuttingDown
	mux, err := tasks.NewMux(&tasks.TokenHandlers{
		Refresher: refresher,
		Locations: d.Store,
		Enqueuer:  client,
		Redis:     d.Redis,
		Window:    d.Config.RefreshWindow,
		Clock:     d.Clock,
		Log:       d.Log,
	}, syncHandlers, &tasks.AlertHandlers{Evaluator: d.Evaluator()}, d.InboundHandlers(syncHandlers))
	if err != nil {
		return err
	}
	mux.Use(tracing.TaskMiddleware(d.Tracer))
	// A worker that goes idle after a burst gives the burst's heap back.
	idle := &ops.IdleMemory{}
	mux.Use(func(h asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			defer idle.Begin()()
			return h.ProcessTask(ctx, t)
		})
	})

	syncRecovery := &tasks.SyncRecovery{Runs: d.Store, Enqueuer: client, Locks: syncHandlers.Locks, Redis: d.Redis,
		Every: o.SyncRecoverEvery, Log: d.Log, Clock: d.Clock}
	if err := syncRecovery.Validate(); err != nil {
		return err
	}

	newServer := func(concurrency int, queues map[string]int) *asynq.Server {
		return asynq.NewServerFromRedisClient(d.Redis, asynq.Config{
			Concurrency:     concurrency,
			Queues:          queues,
			RetryDelayFunc:  tasks.RetryDelay,
			IsFailure:       tasks.IsFailure,
			ShutdownTimeout: shutdownTimeout,
			// An idle worker looks for new tasks this often (asynq waits 1 s).
			TaskCheckInterval: 100 * time.Millisecond,
			// A sync handed back to the rate limiter is scheduled for when
			// the location's window frees (asynq rounds that down to the
			// second); its wait there is not to be lengthened by asynq's 5 s
			// between looks at the scheduled tasks.
			DelayedTaskCheckInterval: 250 * time.Millisecond,
			Logger:                   AsynqLogger{d.Log},
			LogLevel:                 asynq.WarnLevel,
		})
	}
	// The heartbeat beats before the first refresh can take a lock, and
	// stops after the last one ended (below), so that every lock this
	// worker holds names a live worker, and a dead one's are taken over
	// at once.
	stopHeartbeat, err := refresher.Heartbeat(ctx)
	if err != nil {
		return err
	}
	defer stopHeartbeat()
	// Token work has servers slots of its own: however long the syncs,
	// a refresh never waits for a free worker. The token concurrency is
	// the token calls to GHL at once (refresher.CallSlots); the server
	// runs twice as many tasks, so that a refresh's reads and writes, and
	// the queue's work between tasks, overlap the others' calls.
	tokenSrv := newServer(TokenTasksPerCall*o.TokenConcurrency, map[string]int{tasks.QueueCritical: 1})
	syncSrv := newServer(o.Concurrency, map[string]int{tasks.QueueDefault: 1})
	if err := tokenSrv.Start(mux); err != nil {
		return err
	}
	if err := syncSrv.Start(mux); err != nil {
		tokenSrv.Shutdown()
		return err
	}

	opsCtx, stopOps := context.WithCancel(context.WithoutCancel(ctx))
	defer stopOps()
	waitOps, err := ops.Serve(opsCtx, d.Config.MetricsAddr, opsHandler(d.Config, d.Metrics.Registry, d.Ready, d.Log), d.Log)
	if err != nil {
		tokenSrv.Shutdown()
		syncSrv.Shutdown()
		return fmt.Errorf("%s: %w", config.VarMetricsAddr, err)
	}

	recoverCtx, stopRecover := context.WithCancel(ctx)
	recovered := make(chan struct{})
	go func() {
		defer close(recovered)
		refresher.Recover(recoverCtx, o.RecoverEvery)
	}()
	syncRecovered := make(chan struct{})
	go func() {
		defer close(syncRecovered)
		syncRecovery.Run(recoverCtx)
	}()
	idled := make(chan struct{})
	go func() {
		defer close(idled)
		idle.Run(recoverCtx)
	}()
	sweep := &tasks.WebhookSweep{Events: d.Store, Enqueuer: client, Redis: d.Redis, Log: d.Log, Clock: d.Clock}
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		sweep.Run(recoverCtx)
	}()
	// Connections whose tokens the web callback kept in Redis while the
	// database was down are written here once it is back.
	pending := &web.PendingConnections{Store: d.connector(client), Redis: d.Redis, Cipher: d.Cipher, Log: d.Log, Clock: d.Clock}
	completed := make(chan struct{})
	go func() {
		defer close(completed)
		pending.Run(recoverCtx, 5*time.Second)
	}()
	d.Log.Info("worker started", "concurrency", o.Concurrency, "token_concurrency", o.TokenConcurrency, "shutdown_timeout", shutdownTimeout)

	<-ctx.Done()
	d.Log.Info("worker shutting down")
	// Producers stop before consumers: first the recovery loops (they
	// start refreshes and enqueue syncs), then the servers stop fetching
	// and finish what they run, then the heartbeat (no refresh of this
	// worker runs any more), and the metrics endpoint goes last so the
	// shutdown can be watched. The sync server stops fetching before the
	// syncs are told to hand over, so that no follow-up is taken up here
	// only to be handed over again. Both servers stop fetching at once and
	// shut down side by side: each waits up to the shutdown timeout for
	// what it runs, so one after the other they could take twice that,
	// past a supervisor's grace period (sized for one, see
	// WorkerShutdownTimeout), and the token server would go on taking new
	// refreshes while the syncs wound down.
	stopRecover()
	<-recovered
	<-syncRecovered
	<-idled
	<-swept
	<-completed
	syncSrv.Stop()
	tokenSrv.Stop()
	close(shuttingDown)
	var servers sync.WaitGroup
	servers.Go(syncSrv.Shutdown)
	servers.Go(tokenSrv.Shutdown)
	servers.Wait()
	stopHeartbeat()
	stopOps()
	return waitOps()
}
