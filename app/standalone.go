package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/app/sandbox"
	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/embedredis"
	"github.com/ghlsync/ghlsync/internal/tracing"
	"github.com/ghlsync/ghlsync/scheduler"
)

// StandaloneOptions configure `worker --standalone`.
type StandaloneOptions struct {
	// Sandbox adds the in-process fake GHL with demo data.
	Sandbox bool
	Worker  WorkerOptions
}

// RunStandalone runs worker, scheduler and web in one process on an
// embedded Redis and the configured database (an SQLite file by default),
// until ctx is done. out receives the start-up lines that say where to
// look.
func RunStandalone(ctx context.Context, cfg *config.Config, o StandaloneOptions, out io.Writer) error {
	log := NewLogger(out, cfg.LogLevel)
	dir := "."
	if p := config.SQLitePath(cfg.DatabaseURL); p != "" {
		dir = filepath.Dir(p)
	}
	if cfg.EncryptionKey == "" {
		if config.SQLitePath(cfg.DatabaseURL) == "" {
			return &config.Error{Var: config.VarEncryptionKey, Msg: "is required with a PostgreSQL database (generate one with: openssl rand -base64 32)"}
		}
		key, err := config.EnsureKeyFile(filepath.Join(dir, "ghlsync.key"))
		if err != nil {
			return fmt.Errorf("standalone: token key file: %w", err)
		}
		cfg.EncryptionKey = key
	}

	redisSrv, err := embedredis.Start("127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("standalone: embedded Redis: %w", err)
	}
	defer redisSrv.Close()
	cfg.RedisURL = redisSrv.URL()

	webLn, err := net.Listen("tcp", cfg.WebAddr)
	if err != nil {
		return fmt.Errorf("%s: %w", config.VarWebAddr, err)
	}
	defer webLn.Close()
	webURL := localURL(webLn.Addr())

	var sb *sandbox.Server
	if o.Sandbox {
		if sb, err = sandbox.Start(filepath.Join(dir, "ghlsync-sandbox.json")); err != nil {
			return err
		}
		defer func() {
			if err := sb.Close(); err != nil {
				log.Error("sandbox: saving the fake GHL's state", "err", err)
			}
		}()
		cfg.GHLAPIURL, cfg.GHLMarketplace = sb.URL, sb.URL
		cfg.GHLClientID, cfg.GHLClientSecret = sb.ClientID(), sb.ClientSecret()
		cfg.GHLRedirectURI = webURL + "/api/auth/callback"
	}

	d, err := Open(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer d.Close()
	if o.Sandbox {
		if err := sandbox.Seed(ctx, d.Store, time.Now()); err != nil {
			return err
		}
	}
	if _, err := scheduler.Setup(ctx, d.Store, DefaultSchedules, time.Now(), false); err != nil {
		return err
	}

	// The worker and the web server outlive ctx until the producers have
	// stopped: see the shutdown below.
	workerCtx, stopWorker := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWorker()
	workerDone := make(chan error, 1)
	go func() { workerDone <- RunWorker(workerCtx, d, o.Worker) }()

	web := &http.Server{Handler: WebHandler(d), ReadHeaderTimeout: 10 * time.Second}
	webDone := make(chan error, 1)
	go func() { webDone <- web.Serve(webLn) }()

	if sb != nil {
		connected, err := sb.Connect(ctx, d.Store, webURL)
		if err != nil {
			log.Error("sandbox: connecting the demo locations", "err", err)
		} else if len(connected) > 0 {
			log.Info("sandbox: connected the demo locations through the OAuth flow", "locations", connected)
		}
	}

	client := asynq.NewClient(d.RedisOpt)
	defer client.Close()
	schedCtx, stopSched := context.WithCancel(ctx)
	defer stopSched()
	schedDone := make(chan error, 1)
	go func() {
		sched := &scheduler.Scheduler{Store: d.Store, Enqueuer: tracing.Enqueue(d.Tracer, client), Options: scheduler.Options{
			Logger: log, Metrics: scheduler.NewMetrics(d.Metrics.Registry),
		}}
		schedDone <- sched.Run(schedCtx)
	}()
	waitQueueMetrics := exportQueueMetrics(schedCtx, d.Redis, d.Metrics.Registry, log)

	fmt.Fprintf(out, "\nghlsync standalone is running\n")
	fmt.Fprintf(out, "  status page:  %s/\n", webURL)
	fmt.Fprintf(out, "  queues:       %s/monitoring\n", webURL)
	fmt.Fprintf(out, "  connect:      %s/api/auth/connect\n", webURL)
	// The embedded Redis has no password, so its URL is shown whole for
	// use; the database's may carry one.
	fmt.Fprintf(out, "  for enqueue:  REDIS_URL=%s\n", config.Redact(cfg.RedisURL))
	fmt.Fprintf(out, "  database:     %s\n", config.Redact(cfg.DatabaseURL))
	if sb != nil {
		fmt.Fprintf(out, "  sandbox:      fake GHL at %s with %d demo locations\n", sb.URL, len(sandbox.Locations))
	}
	fmt.Fprintln(out)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-workerDone:
		workerDone <- runErr
	case runErr = <-webDone:
		webDone <- runErr
	}
	log.Info("standalone shutting down")
	// Producers stop before consumers: the scheduler and the web server
	// (which enqueue) first, then the worker finishes what it runs; the
	// deferred closes then save the sandbox and close the stores.
	stopSched()
	<-schedDone
	waitQueueMetrics()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	web.Shutdown(sctx)
	cancel()
	stopWorker()
	if err := <-workerDone; err != nil && runErr == nil {
		runErr = err
	}
	if errors.Is(runErr, http.ErrServerClosed) {
		runErr = nil
	}
	return runErr
}

// localURL is a URL for reaching a listener from this machine.
func localURL(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}
