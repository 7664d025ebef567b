package app

import (
	"net/http"

	"github.com/ghlsync/ghlsync/internal/ops"
	"github.com/ghlsync/ghlsync/internal/web"
)

// WebHandler is the whole web process: the web routes, /metrics and
// /healthz.
func WebHandler(d *Deps) http.Handler {
	s := &web.Server{
		OAuth:          d.GHL.OAuth,
		Store:          d.Store,
		Redis:          d.Redis,
		MarketplaceURL: d.Config.GHLMarketplace,
		Scopes:         d.Config.GHLScopes,
		Log:            d.Log,
	}
	mux := ops.Handler(d.Metrics.Registry, d.Ready)
	mux.Handle("/", s.Handler())
	return mux
}
