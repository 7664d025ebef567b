package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/app/sandbox"
	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/embedredis"
	"github.com/ghlsync/ghlsync/internal/tracing"
	"github.com/ghlsync/ghlsync/refresh"
	"github.com/ghlsync/ghlsync/scheduler"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/tasks"
	"github.com/ghlsync/ghlsync/web"
)

// StandaloneOptions configure `worker --standalone`.
type StandaloneOptions struct {
	// Sandbox adds the in-process fake GHL with demo data.
	Sandbox bool
	// RedisAddr is where the embedded Redis listens; default
	// DefaultRedisAddr. It is the same at every start, so that the
	// REDIS_URL given to enqueue and scheduler keeps working.
	RedisAddr string
	Worker    WorkerOptions
}

// DefaultRedisAddr is where the standalone mode's embedded Redis listens
// unless told otherwise: loopback, beside Redis's own 6379.
const DefaultRedisAddr = "127.0.0.1:6390"

// runningFile, beside the SQLite file, exists while a standalone process
// runs: found at start, it says the last one did not stop cleanly.
const runningFile = "ghlsync.running"

// RunStandalone runs worker, scheduler and web in one process on an
// embedded Redis and the configured database (an SQLite file by default),
// until ctx is done. out receives the start-up lines that say where to
// look.
//
// The embedded Redis lives in the process's memory, so every start finds
// it empty: the queue and the refreshes' in-flight marks of the last run
// are gone. A start therefore enqueues a sync pass of every active
// location (unchanged records cost no GHL call), and after a run that did
// not stop cleanly (killed, or the machine went down) it first refreshes
// every active location, inside GHL's 30 s grace: a refresh that GHL
// answered but whose new token the killed run never stored is answered
// again with that token, which is what the in-flight mark would have had
// a worker do.
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

	redisAddr := cmp.Or(o.RedisAddr, DefaultRedisAddr)
	redisSrv, err := embedredis.Start(redisAddr)
	if err != nil {
		return fmt.Errorf("standalone: embedded Redis at %s (another standalone running? --redis-addr picks another address): %w", redisAddr, err)
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
		if sb, err = sandbox.Start(filepath.Join(dir, "ghlsync-sandbox.json"), log); err != nil {
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
		if cfg.WebhookKey == nil && cfg.WebhookRSAKey == nil {
			// The fake's webhooks reach the inbox, signed with a key of
			// the sandbox's own.
			if cfg.WebhookKey, err = sb.SendWebhooks(webURL + "/api/webhooks/ghl"); err != nil {
				return err
			}
		}
	}

	d, err := Open(ctx, cfg, log, true, RedisPool(o.Worker.RedisPool()))
	if err != nil {
		return err
	}
	defer d.Close()
	if o.Sandbox {
		if err := sandbox.Seed(ctx, d.Store, time.Now()); err != nil {
			return err
		}
	}
	setup, err := scheduler.Setup(ctx, d.Store, DefaultSchedules, time.Now(), false)
	if err != nil {
		return err
	}

	running := filepath.Join(dir, runningFile)
	if _, err := os.Stat(running); err == nil {
		log.Warn("the last standalone run did not stop cleanly, and its in-memory Redis went with it: refreshing every active location now, inside GHL's 30 s grace")
		refreshActive(ctx, d)
	}
	if err := os.WriteFile(running, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		return fmt.Errorf("standalone: %w", err)
	}

	// The worker and the web server outlive ctx until the producers have
	// stopped: see the shutdown below.
	workerCtx, stopWorker := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWorker()
	workerDone := make(chan error, 1)
	go func() { workerDone <- RunWorker(workerCtx, d, o.Worker) }()

	handler := WebHandler(d)
	if sb != nil {
		handler = withSandboxPage(d.Config, sb, handler)
	}
	web := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
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

	client := asynq.NewClientFromRedisClient(d.Redis)
	enqueueStartSyncs(ctx, d, client, setup)
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

	printBanner(out, cfg, webURL, redisAddr, sb)

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
	// Every refresh has ended with the worker: none is left in flight.
	if err := os.Remove(running); err != nil && !errors.Is(err, os.ErrNotExist) && runErr == nil {
		runErr = fmt.Errorf("standalone: %w", err)
	}
	return runErr
}

// refreshActive refreshes every active location at once (force: whatever
// its expiry), side by side, so that each reaches GHL inside the grace of
// a refresh the last run may have left unstored. A failure is logged: a
// location GHL refuses is marked needs_reauth, as by any refresh.
func refreshActive(ctx context.Context, d *Deps) {
	creds, err := d.Store.Credentials(ctx)
	if err != nil {
		d.Log.Error("standalone: listing the locations to refresh", "err", err)
		return
	}
	r := d.Refresher()
	sem := make(chan struct{}, 20)
	var wg sync.WaitGroup
	for _, c := range creds {
		if c.Status != store.StatusActive {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if res, err := r.Refresh(ctx, refresh.Request{LocationID: c.LocationID, Force: true}); err != nil {
				d.Log.Warn("standalone: refreshing after an unclean stop", "location", c.LocationID, "outcome", res.Outcome, "err", err)
			}
		})
	}
	wg.Wait()
}

// enqueueStartSyncs enqueues a sync pass of each kind for every active
// location, which the last run's queue may have held, unless its schedule
// was created just now (a new schedule runs at once).
func enqueueStartSyncs(ctx context.Context, d *Deps, client *asynq.Client, setup []scheduler.SetupResult) {
	created := map[string]bool{}
	for _, r := range setup {
		created[r.Name] = r.Action == "created"
	}
	newTask := map[string]func(string) (*asynq.Task, error){
		tasks.TypePatientsSync:     tasks.NewPatientsSyncTask,
		tasks.TypeAppointmentsSync: tasks.NewAppointmentsSyncTask,
	}
	for _, s := range DefaultSchedules {
		nt := newTask[s.TaskType]
		if nt == nil || created[s.Name] || s.Payload != "" {
			// A new schedule runs at once anyway; the full passes wait
			// for their night.
			continue
		}
		task, err := nt("")
		if err == nil {
			_, err = client.EnqueueContext(ctx, task)
		}
		if err != nil {
			d.Log.Error("standalone: enqueueing the start-up sync", "task", s.TaskType, "err", err)
		}
	}
}

// withSandboxPage adds the sandbox's page of the fake GHL's side, behind
// the same admin guard as the status page (it shows the demo patients).
func withSandboxPage(cfg *config.Config, sb *sandbox.Server, next http.Handler) http.Handler {
	admin := (&web.Admin{User: cfg.AdminUser, Password: cfg.AdminPassword, PublicURL: cfg.WebPublicURL}).Guard()
	mux := http.NewServeMux()
	mux.Handle("GET "+sandbox.PagePath, admin(sb.Page()))
	mux.Handle("/", next)
	return mux
}

// printBanner prints where to look, and what the command-line tools need.
func printBanner(out io.Writer, cfg *config.Config, webURL, redisAddr string, sb *sandbox.Server) {
	dbURL := cfg.DatabaseURL
	if p := config.SQLitePath(dbURL); p != "" {
		if abs, err := filepath.Abs(p); err == nil {
			// Absolute, so that the admin commands find the file from any
			// directory.
			dbURL = "sqlite://" + abs + strings.TrimPrefix(dbURL, "sqlite://"+p)
		}
	}
	fmt.Fprintf(out, "\nghlsync standalone is running\n")
	fmt.Fprintf(out, "  status page:  %s/\n", webURL)
	if sb != nil {
		fmt.Fprintf(out, "  sandbox:      %s%s shows the fake GHL's side (%d demo locations; its API at %s)\n",
			webURL, sandbox.PagePath, len(sandbox.Locations), sb.URL)
	}
	fmt.Fprintf(out, "  queues:       %s/monitoring\n", webURL)
	fmt.Fprintf(out, "  connect:      %s/api/auth/connect\n", webURL)
	fmt.Fprintf(out, "  metrics:      %s (/metrics, /healthz)\n", cfg.MetricsAddr)
	// The embedded Redis has no password, so its URL is shown whole for
	// use; the database's may carry one.
	fmt.Fprintf(out, "  for enqueue:  REDIS_URL=%s\n", config.Redact(cfg.RedisURL))
	fmt.Fprintf(out, "  database:     DATABASE_URL=%s\n", config.Redact(dbURL))
	fmt.Fprintf(out, "  the embedded Redis is at %s at every start (--redis-addr changes it); the admin commands take both, e.g.\n", redisAddr)
	fmt.Fprintf(out, "    REDIS_URL=%s DATABASE_URL=%s go run ./cmd/scheduler list\n\n", config.Redact(cfg.RedisURL), config.Redact(dbURL))
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
