package app

import (
	"net/http"

	"github.com/ghlsync/ghlsync/internal/ops"
	"github.com/ghlsync/ghlsync/web"
)

// WebHandler is the whole web process: the web routes, the GHL webhooks,
// asynqmon at /monitoring behind the admin guard, /metrics, /healthz and
// /readyz.
func WebHandler(d *Deps) http.Handler {
	s := &web.Server{
		OAuth:          d.GHL.OAuth,
		Store:          d.Store,
		Redis:          d.Redis,
		MarketplaceURL: d.Config.GHLMarketplace,
		Scopes:         d.Config.GHLScopes,
		Log:            d.Log,
		Cipher:         d.Cipher,
		Clock:          d.Clock,
		Webhooks: web.Webhooks{
			Store:  d.Store,
			Key:    d.Config.WebhookKey,
			RSAKey: d.Config.WebhookRSAKey,
			AppID:  web.AppID(d.Config.GHLClientID),
			Clock:  d.Clock,
		},
	}
	if d.Config.WebhookKey == nil && d.Config.WebhookRSAKey == nil {
		d.Log.Warn("GHL_WEBHOOK_PUBLIC_KEY is not set: /api/webhooks/ghl answers 503, so GHL's INSTALL and UNINSTALL webhooks are not acted on")
	}
	admin := web.Admin(d.Config.AdminUser, d.Config.AdminPassword, d.Log)
	mux := ops.Handler(d.Metrics.Registry, d.Ready)
	mux.Handle(web.MonitoringPath+"/", admin(web.Monitoring(d.Redis)))
	status := admin((&web.Status{Source: d.Store, Log: d.Log, Clock: d.Clock}).Handler())
	mux.Handle("GET /{$}", status)
	mux.Handle("GET /api/locations", status)
	mux.Handle("/", s.Handler())
	return mux
}
