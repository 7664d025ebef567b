package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/ops"
	"github.com/ghlsync/ghlsync/internal/tracing"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/tasks"
	"github.com/ghlsync/ghlsync/web"
)

// WebHandler is the whole web process on one address: the web routes, the
// GHL webhooks, the operator's pages (web.Status), the alerts page and
// asynqmon at /monitoring behind the admin guard, /metrics behind it too
// (it names every location) or behind its own login (METRICS_PASSWORD),
// /healthz and /readyz.
func WebHandler(d *Deps) http.Handler { return webHandler(d, true) }

// WebHandlers split the web process for a separate METRICS_ADDR: public
// is WebHandler without /metrics and /readyz (it keeps /healthz), and
// private serves /metrics, /healthz and /readyz with no admin guard, for
// an address only the monitoring reaches (/metrics behind its own login
// when METRICS_PASSWORD is set).
func WebHandlers(d *Deps) (public, private http.Handler) {
	return webHandler(d, false), opsHandler(d.Config, d.Metrics.Registry, d.webReady, d.Log)
}

func webHandler(d *Deps, withOps bool) http.Handler {
	inboundClient := tracing.Enqueue(d.Tracer, asynq.NewClientFromRedisClient(d.Redis))
	s := &web.Server{
		OAuth:          d.GHL.OAuth,
		Store:          d.connector(tracing.Enqueue(d.Tracer, asynq.NewClientFromRedisClient(d.Redis))),
		Redis:          d.Redis,
		MarketplaceURL: d.Config.GHLMarketplace,
		Scopes:         d.Config.GHLScopes,
		AppUserType:    d.Config.GHLAppUserType,
		AppID:          web.AppID(d.Config.GHLClientID),
		Locations:      d.GHL.Locations,
		Log:            d.Log,
		Cipher:         d.Cipher,
		Clock:          d.Clock,
		Webhooks: web.Webhooks{
			Store:  d.Store,
			Key:    d.Config.WebhookKey,
			RSAKey: d.Config.WebhookRSAKey,
			AppID:  web.AppID(d.Config.GHLClientID),
			Clock:  d.Clock,
			Events: d.Store,
			Process: func(ctx context.Context, id int64) error {
				return tasks.EnqueueWebhookEvent(ctx, inboundClient, id)
			},
		},
	}
	if d.Config.WebhookKey == nil && d.Config.WebhookRSAKey == nil {
		d.Log.Warn("GHL_WEBHOOK_PUBLIC_KEY is not set: /api/webhooks/ghl answers 503, so GHL's INSTALL and UNINSTALL webhooks are not acted on")
	}
	admin := (&web.Admin{
		User:           d.Config.AdminUser,
		Password:       d.Config.AdminPassword,
		ViewerUser:     d.Config.ViewerUser,
		ViewerPassword: d.Config.ViewerPassword,
		PublicURL:      d.Config.WebPublicURL,
		Log:            d.Log,
		Clock:          d.Clock,
	}).Guard()
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", ops.Healthz())
	if withOps {
		metricsGuard := admin
		if d.Config.MetricsPassword != "" {
			metricsGuard = web.MetricsGuard(d.Config.MetricsUser, d.Config.MetricsPassword, d.Log, d.Clock)
		}
		mux.Handle("GET /metrics", metricsGuard(ops.Metrics(d.Metrics.Registry)))
		mux.Handle("GET /readyz", ops.Readyz(d.webReady))
	}
	mux.Handle(web.MonitoringPath+"/", admin(web.Monitoring(d.Redis)))
	// The client shares the process's Redis connections; closing those
	// is enough.
	client := asynq.NewClientFromRedisClient(d.Redis)
	status := admin((&web.Status{Source: d.Store, Keys: d.Cipher, Log: d.Log, Clock: d.Clock, PausedQueues: d.pausedQueues,
		Actions:   webActions{redis: d.Redis, client: client},
		Schedules: webSchedules{store: d.Store, client: client, clock: d.Clock},
		FormKey:   d.Cipher.DeriveKey(uiFormKey),
		PublicURL: d.Config.WebPublicURL,
	}).Handler())
	for _, route := range web.Routes {
		mux.Handle(route, status)
	}
	mux.Handle("GET "+store.AlertsPath, admin((&web.Alerts{Source: d.Store, Log: d.Log, Clock: d.Clock}).Handler()))
	// The OAuth routes and GHL's webhooks are traced, each the root of
	// the trace its enqueued tasks join.
	mux.Handle("/", tracing.Handler(d.Tracer, s.Handler()))
	// Every state-changing request, asynqmon's included, must come from
	// ghlsync's own pages; GHL's webhook is authenticated by its signature.
	return (&web.SameOrigin{PublicURL: d.Config.WebPublicURL, Exempt: []string{web.WebhookRoute}}).Wrap(mux)
}

// opsHandler is ops.Handler with /metrics behind the /metrics login of
// cfg when it has one (METRICS_PASSWORD), for the METRICS_ADDR of every
// process.
func opsHandler(cfg *config.Config, reg *prometheus.Registry, ready func(context.Context) error, log *slog.Logger) http.Handler {
	h := ops.Handler(reg, ready)
	if cfg.MetricsPassword == "" {
		return h
	}
	guard := web.MetricsGuard(cfg.MetricsUser, cfg.MetricsPassword, log, nil)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", guard(h))
	mux.Handle("/", h)
	return mux
}

// webReady is the web process's readiness: Redis and the database answer,
// and no queue of ghlsync's is paused. A paused queue (asynqmon's pause
// button) stops every task in it without an error anywhere else.
func (d *Deps) webReady(ctx context.Context) error {
	err := d.Ready(ctx)
	if err != nil {
		// Redis down says it all; the queues cannot be read then.
		return err
	}
	paused, err := d.pausedQueues(ctx)
	if err != nil {
		return fmt.Errorf("queues: %w", err)
	}
	var errs []error
	for _, q := range paused {
		errs = append(errs, fmt.Errorf("queue %s is paused: none of its tasks run until it is resumed at %s", q, web.MonitoringPath))
	}
	return errors.Join(errs...)
}

// pausedQueues lists the queues ghlsync uses that are paused. A queue no
// task was ever put in is unknown to asynq, so nothing can have paused it.
func (d *Deps) pausedQueues(context.Context) ([]string, error) {
	insp := asynq.NewInspectorFromRedisClient(d.Redis)
	known, err := insp.Queues()
	if err != nil {
		return nil, err
	}
	var paused []string
	for _, q := range []string{tasks.QueueCritical, tasks.QueueDefault} {
		if !slices.Contains(known, q) {
			continue
		}
		info, err := insp.GetQueueInfo(q)
		if err != nil {
			return nil, fmt.Errorf("queue %s: %w", q, err)
		}
		if info.Paused {
			paused = append(paused, q)
		}
	}
	return paused, nil
}
