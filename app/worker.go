package app

import (
	"context"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/ops"
	"github.com/ghlsync/ghlsync/tasks"
	"github.com/ghlsync/ghlsync/web"
)

// WorkerOptions size a worker.
type WorkerOptions struct {
	// Concurrency is the number of sync tasks run at once.
	Concurrency int
	// TokenConcurrency is the number of token tasks run at once, in slots
	// of their own that sync work cannot take.
	TokenConcurrency int
	// RecoverEvery is how often interrupted refreshes are looked for.
	RecoverEvery time.Duration
}

// RunWorker runs the asynq servers until ctx is done, then shuts down.
func RunWorker(ctx context.Context, d *Deps, o WorkerOptions) error {
	if o.Concurrency <= 0 {
		o.Concurrency = 10
	}
	if o.TokenConcurrency <= 0 {
		o.TokenConcurrency = 20
	}
	if o.RecoverEvery <= 0 {
		o.RecoverEvery = time.Second
	}
	refresher := d.Refresher()
	client := asynq.NewClient(d.RedisOpt)
	defer client.Close()
	mux, err := tasks.NewMux(&tasks.TokenHandlers{
		Refresher: refresher,
		Locations: d.Store,
		Enqueuer:  client,
		Window:    d.Config.RefreshWindow,
		Clock:     d.Clock,
		Log:       d.Log,
	}, d.SyncHandlers(refresher, client))
	if err != nil {
		return err
	}

	newServer := func(concurrency int, queues map[string]int) *asynq.Server {
		return asynq.NewServer(d.RedisOpt, asynq.Config{
			Concurrency:     concurrency,
			Queues:          queues,
			RetryDelayFunc:  tasks.RetryDelay,
			IsFailure:       tasks.IsFailure,
			ShutdownTimeout: 30 * time.Second,
			// An idle worker looks for new tasks this often (asynq waits 1 s).
			TaskCheckInterval: 100 * time.Millisecond,
			Logger:            AsynqLogger{d.Log},
			LogLevel:          asynq.WarnLevel,
		})
	}
	// Token work has servers slots of its own: however long the syncs,
	// a refresh never waits for a free worker.
	tokenSrv := newServer(o.TokenConcurrency, map[string]int{tasks.QueueCritical: 1})
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
	waitOps, err := ops.Serve(opsCtx, d.Config.MetricsAddr, ops.Handler(d.Metrics.Registry, d.Ready), d.Log)
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
	// Connections whose tokens the web callback kept in Redis while the
	// database was down are written here once it is back.
	pending := &web.PendingConnections{Store: d.Store, Redis: d.Redis, Cipher: d.Cipher, Log: d.Log, Clock: d.Clock}
	completed := make(chan struct{})
	go func() {
		defer close(completed)
		pending.Run(recoverCtx, 5*time.Second)
	}()
	d.Log.Info("worker started", "concurrency", o.Concurrency, "token_concurrency", o.TokenConcurrency)

	<-ctx.Done()
	d.Log.Info("worker shutting down")
	// Producers stop before consumers: first the recovery loop (it starts
	// refreshes), then the servers stop fetching and finish what they run,
	// and the metrics endpoint goes last so the shutdown can be watched.
	stopRecover()
	<-recovered
	<-completed
	syncSrv.Shutdown()
	tokenSrv.Shutdown()
	stopOps()
	return waitOps()
}
