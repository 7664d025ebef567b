// Package app wires ghlsync's parts together for every binary: the shared
// parts of a process (Deps: logger, database, Redis, GHL client, metrics,
// clock), RunWorker, RunWeb, RunScheduler, RunStandalone, the enqueue and
// schedule commands, and the exit-status scheme. Nothing below imports it.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/ghlsync/ghlsync/alert"
	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/metrics"
	"github.com/ghlsync/ghlsync/internal/ratelimit"
	"github.com/ghlsync/ghlsync/internal/redisconn"
	"github.com/ghlsync/ghlsync/internal/tokencrypt"
	"github.com/ghlsync/ghlsync/internal/tracing"
	"github.com/ghlsync/ghlsync/refresh"
	"github.com/ghlsync/ghlsync/store"
)

// NewLogger returns the process logger: text lines on w at level. It
// also becomes the logger of go-redis's own messages, at debug level.
func NewLogger(w io.Writer, level slog.Level) *slog.Logger {
	l := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
	redis.SetLogger(redisLog{l})
	return l
}

// redisLog takes go-redis's own messages, which otherwise go to stderr
// unformatted: a Redis that does not answer printed a pool line per
// connection attempt before the one line that says so (ConnectRedis's
// error). They are debug detail; every failure that matters reaches its
// caller as an error.
type redisLog struct{ l *slog.Logger }

func (r redisLog) Printf(ctx context.Context, format string, v ...any) {
	l := r.l
	if l == nil {
		l = slog.Default()
	}
	l.DebugContext(ctx, config.RedactText(fmt.Sprintf(format, v...)), "component", "go-redis")
}

func init() { redis.SetLogger(redisLog{}) }

// Deps are the shared parts of a process. Close releases them.
type Deps struct {
	Config  *config.Config
	Log     *slog.Logger
	Cipher  *tokencrypt.Cipher
	Store   *store.Store
	Redis   redis.UniversalClient
	GHL     *ghl.Client
	Metrics *metrics.Metrics
	Clock   clock.Clock
	// Limiter holds the GHL calls of every worker to GHL's per-location
	// rate limit.
	Limiter *ratelimit.Limiter
	// Tracer makes the process's spans; nil, and nothing traced at no
	// cost, unless OTEL_* configures an exporter (see internal/tracing).
	Tracer trace.TracerProvider
	// tracing is the provider Open set up, flushed by Close.
	tracing *tracing.Provider
}

// OpenOption changes what Open builds.
type OpenOption func(*openOptions)

type openOptions struct {
	service   string
	tracer    trace.TracerProvider
	redisPool int
}

// RedisPool lets the process hold up to n Redis connections at once
// (WorkerOptions.RedisPool for a worker), unless REDIS_URL sizes the pool;
// go-redis's default when not given.
func RedisPool(n int) OpenOption { return func(o *openOptions) { o.redisPool = n } }

// Service names the process in its traces (the default of
// OTEL_SERVICE_NAME); "ghlsync" when not given.
func Service(name string) OpenOption { return func(o *openOptions) { o.service = name } }

// WithTracerProvider makes the process's spans with tp instead of the one
// the OTEL_* variables configure; a test's in-memory exporter.
func WithTracerProvider(tp trace.TracerProvider) OpenOption {
	return func(o *openOptions) { o.tracer = tp }
}

// Open connects to the database (and migrates it), to Redis, and builds
// the GHL client. needStore false skips the database (enqueue needs only
// Redis). Tracing is set up from the OTEL_* variables unless
// WithTracerProvider gives a provider; the GHL client and the store trace
// through it.
func Open(ctx context.Context, cfg *config.Config, log *slog.Logger, needStore bool, opts ...OpenOption) (*Deps, error) {
	o := openOptions{service: "ghlsync"}
	for _, opt := range opts {
		opt(&o)
	}
	d := &Deps{Config: cfg, Log: log, Metrics: metrics.New(), Clock: clock.Real, Tracer: o.tracer}
	var err error
	if d.Tracer == nil {
		if d.tracing, err = tracing.Setup(ctx, o.service, log); err != nil {
			return nil, err
		}
		if d.tracing.Enabled() {
			d.Tracer = d.tracing
		}
	}
	if d.Redis, err = connectRedis(ctx, cfg.RedisURL, o.redisPool); err != nil {
		d.Close()
		return nil, err
	}
	d.Limiter = &ratelimit.Limiter{Redis: d.Redis}
	if needStore {
		if d.Cipher, err = cfg.Cipher(); err != nil {
			d.Close()
			return nil, err
		}
		if d.Store, err = store.Open(ctx, cfg.DatabaseURL, d.Cipher, store.WithTracer(d.Tracer)); err != nil {
			d.Close()
			return nil, databaseError(err)
		}
		if err := d.Store.Migrate(ctx); err != nil {
			d.Close()
			return nil, err
		}
		d.Metrics.Registry.MustRegister(metrics.NewExpiryCollector(d.tokenStates, d.Clock),
			metrics.NewHealthCollector(func(ctx context.Context) (*metrics.Health, error) {
				return alert.ReadHealth(ctx, d.Store, d.Clock)
			}))
	}
	d.GHL, err = ghl.NewClient(ghl.Config{
		BaseURL:             cfg.GHLAPIURL,
		ClientID:            cfg.GHLClientID,
		ClientSecret:        cfg.GHLClientSecret,
		RedirectURI:         cfg.GHLRedirectURI,
		AppVersionID:        cfg.GHLAppVersionID,
		LoginWindowOpenMode: cfg.GHLLoginWindowOpenMode,
		OnResponse:          d.Metrics.ObserveGHL,
		TracerProvider:      d.Tracer,
	})
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("%s: %w", config.VarAPIURL, err)
	}
	return d, nil
}

// databaseError names DATABASE_URL in an error of store.Open; a missing
// SQLite directory is bad configuration (exit status 2).
func databaseError(err error) error {
	if errors.Is(err, store.ErrNoDirectory) {
		return &config.Error{Var: config.VarDatabaseURL, Msg: err.Error()}
	}
	return fmt.Errorf("%s: %w", config.VarDatabaseURL, err)
}

// tokenStates lists every location's token for the expiry metrics.
func (d *Deps) tokenStates(ctx context.Context) ([]metrics.TokenState, error) {
	creds, err := d.Store.Credentials(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]metrics.TokenState, len(creds))
	for i, c := range creds {
		out[i] = metrics.TokenState{Location: c.LocationID, Status: string(c.Status), ExpiresAt: c.ExpiresAt}
	}
	return out, nil
}

// ConnectRedis parses a REDIS_URL (package redisconn: redis://, rediss://,
// redis-sentinel://, redis-cluster://) and checks that Redis answers. A
// process's queue clients and servers share the client it returns
// (asynq's ...FromRedisClient), so they reach the same Redis, with the same
// credentials, database and TLS, on one pool.
func ConnectRedis(ctx context.Context, redisURL string) (redis.UniversalClient, error) {
	return connectRedis(ctx, redisURL, 0)
}

// connectRedis is ConnectRedis with a pool of up to pool connections
// (redisconn.Options.SizePool), when above zero.
func connectRedis(ctx context.Context, redisURL string, pool int) (redis.UniversalClient, error) {
	opt, err := redisconn.Parse(redisURL)
	if err != nil {
		return nil, &config.Error{Var: config.VarRedisURL, Msg: err.Error()}
	}
	if pool > 0 {
		opt.SizePool(pool)
	}
	rc := opt.NewClient()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := rc.Ping(pctx).Err(); err != nil {
		rc.Close()
		return nil, fmt.Errorf("redis at %s does not answer: %w", config.Redact(redisURL), err)
	}
	return rc, nil
}

// Refresher builds the token refresher on d.
func (d *Deps) Refresher() *refresh.Refresher {
	return &refresh.Refresher{
		Store:   d.Store,
		GHL:     d.GHL.OAuth,
		Redis:   d.Redis,
		Cipher:  d.Cipher,
		Log:     d.Log,
		Window:  d.Config.RefreshWindow,
		Agency:  d.GHL.OAuth,
		Clock:   d.Clock,
		History: d.Store,
		Observe: func(o refresh.Outcome) {
			d.Metrics.Refreshes.WithLabelValues(string(o)).Inc()
		},
		ObserveFailure: func(reason string) {
			d.Metrics.RefreshFailures.WithLabelValues(reason).Inc()
		},
	}
}

// Evaluator builds the alert evaluator on d: the receivers and threshold
// of the configuration, and a token alert within an hour of expiry, or
// half the refresh window when that is shorter (a token is refreshed only
// within the window, so an hour would alert on every token before its
// refresh is due).
func (d *Deps) Evaluator() *alert.Evaluator {
	return &alert.Evaluator{
		Store:         d.Store,
		Receivers:     alert.NewReceivers(d.Config.AlertWebhookURLs, d.Config.AlertSlackURLs),
		SyncFailures:  d.Config.AlertSyncFailures,
		ExpiresWithin: min(alert.DefaultExpiresWithin, d.Config.RefreshWindow/2),
		PublicURL:     d.Config.WebPublicURL,
		Clock:         d.Clock,
		Log:           d.Log,
		Observe: func(outcome string) {
			d.Metrics.AlertEvaluations.WithLabelValues(outcome).Inc()
		},
		ObserveDelivery: func(receiverType, outcome string) {
			d.Metrics.AlertDeliveries.WithLabelValues(receiverType, outcome).Inc()
		},
	}
}

// Ready checks that Redis and the database answer; the error names each
// that does not.
func (d *Deps) Ready(ctx context.Context) error {
	var errs []error
	if err := d.Redis.Ping(ctx).Err(); err != nil {
		errs = append(errs, fmt.Errorf("redis: %w", err))
	}
	if d.Store != nil {
		if err := d.Store.Ping(ctx); err != nil {
			errs = append(errs, fmt.Errorf("database: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Close releases what Open opened. The spans not yet exported are sent
// first, for 5 seconds at most.
func (d *Deps) Close() {
	if d.tracing != nil {
		flushTracing(d.tracing, d.Log)
	}
	if d.Redis != nil {
		d.Redis.Close()
	}
	if d.Store != nil {
		d.Store.Close()
	}
}

// AsynqLogger adapts slog to asynq's logger.
type AsynqLogger struct{ L *slog.Logger }

func (a AsynqLogger) Debug(args ...any) { a.L.Debug(fmt.Sprint(args...), "component", "asynq") }
func (a AsynqLogger) Info(args ...any)  { a.L.Info(fmt.Sprint(args...), "component", "asynq") }
func (a AsynqLogger) Warn(args ...any)  { a.L.Warn(fmt.Sprint(args...), "component", "asynq") }
func (a AsynqLogger) Error(args ...any) { a.L.Error(fmt.Sprint(args...), "component", "asynq") }
func (a AsynqLogger) Fatal(args ...any) { a.L.Error(fmt.Sprint(args...), "component", "asynq") }
