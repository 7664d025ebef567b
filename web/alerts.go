package web

import (
	"context"
	"html/template"
	"log/slog"
	"net/http"
	"time"

	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/store"
)

// AlertsSource is what the alerts page reads; *store.Store is one.
type AlertsSource interface {
	RecentAlerts(ctx context.Context, limit int) ([]store.Alert, error)
	AlertDeliveries(ctx context.Context, alertIDs []int64) (map[int64][]store.AlertDelivery, error)
}

// Alerts serves the alerts page at store.AlertsPath: the latest alerts,
// firing or resolved, and how each delivery to each receiver went.
type Alerts struct {
	Source AlertsSource
	Log    *slog.Logger
	Clock  clock.Clock
}

// alertsShown is how many alerts the page lists.
const alertsShown = 100

// Handler returns the route of the alerts page.
func (a *Alerts) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+store.AlertsPath, a.page)
	return mux
}

type alertRow struct {
	store.Alert
	Deliveries []store.AlertDelivery
}

var alertsPage = template.Must(template.New("alerts").Funcs(template.FuncMap{
	"ago": func(now, t time.Time) string { return now.Sub(t).Round(time.Second).String() + " ago" },
	"at":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="30">
<title>ghlsync alerts</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #ddd;padding:.4rem .6rem;text-align:left;vertical-align:top}
th{background:#f5f5f5}
.firing,.failed{color:#cf222e;font-weight:bold}.resolved,.sent{color:#1a7f37}.pending{color:#9a6700}
small{color:#666}
</style></head><body>
<h1>ghlsync alerts</h1>
<p><a href="/">status</a> · the latest {{.Shown}} alerts, newest first</p>
{{if not .Alerts}}<p>No alert so far.</p>{{else}}
<table>
<tr><th>Alert</th><th>State</th><th>Since</th><th>Deliveries</th></tr>
{{range $a := .Alerts}}<tr>
<td>{{$a.Summary}}<br><small>{{$a.Detail}}</small><br><small>{{$a.Kind}} · {{$a.Subject}} · episode {{$a.Episode}}</small></td>
<td class="{{$a.State}}">{{$a.State}}{{with $a.ResolvedAt}}<br><small>{{at .}}</small>{{end}}</td>
<td>{{at $a.StartedAt}}<br><small>{{ago $.Now $a.StartedAt}}</small></td>
<td>{{range $a.Deliveries}}<div>{{.Event}} to {{.ReceiverName}}: <span class="{{.State}}">{{.State}}</span>{{with .SentAt}} {{at .}}{{end}} <small>({{.Attempts}} attempts{{with .LastError}}; last error: {{.}}{{end}})</small></div>{{else}}<small>no receiver configured</small>{{end}}</td>
</tr>{{end}}
</table>{{end}}
</body></html>
`))

func (a *Alerts) page(w http.ResponseWriter, r *http.Request) {
	alerts, err := a.Source.RecentAlerts(r.Context(), alertsShown)
	var deliveries map[int64][]store.AlertDelivery
	if err == nil {
		ids := make([]int64, len(alerts))
		for i, al := range alerts {
			ids[i] = al.ID
		}
		deliveries, err = a.Source.AlertDeliveries(r.Context(), ids)
	}
	if err != nil {
		a.log().Error("alerts: reading the alerts", "err", err)
		http.Error(w, "cannot read the alerts now", http.StatusServiceUnavailable)
		return
	}
	rows := make([]alertRow, len(alerts))
	for i, al := range alerts {
		rows[i] = alertRow{Alert: al, Deliveries: deliveries[al.ID]}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := alertsPage.Execute(w, struct {
		Alerts []alertRow
		Shown  int
		Now    time.Time
	}{rows, alertsShown, clock.Or(a.Clock).Now()}); err != nil {
		a.log().Warn("alerts: rendering", "err", err)
	}
}

func (a *Alerts) log() *slog.Logger {
	if a.Log != nil {
		return a.Log
	}
	return slog.Default()
}
