package web

import (
	"html/template"
	"strings"
	"time"
)

var funcs = template.FuncMap{
	"ago": func(now time.Time, t *time.Time) string {
		if t == nil {
			return "never"
		}
		return relative(now, *t)
	},
	"rel": relative,
	"in": func(secs int64) string {
		if secs < 0 {
			return "expired " + (time.Duration(-secs) * time.Second).String() + " ago"
		}
		return "in " + (time.Duration(secs) * time.Second).String()
	},
	// at is a time as the pages print it: UTC, to the second.
	"at": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
	"took": func(start time.Time, end *time.Time) string {
		if end == nil {
			return ""
		}
		return end.Sub(start).Round(time.Millisecond).String()
	},
	"join": strings.Join,
}

// relative says how far t is from now: "3m20s ago", "in 5m".
func relative(now, t time.Time) string {
	d := t.Sub(now).Round(time.Second)
	switch {
	case d > 0:
		return "in " + d.String()
	case d < 0:
		return (-d).String() + " ago"
	}
	return "now"
}

// layout is every page's frame: the title, the navigation, who is logged
// in, a notice or an error, and the page's own "content".
var layout = template.Must(template.New("layout").Funcs(funcs).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">{{if .Refresh}}<meta http-equiv="refresh" content="{{.Refresh}}">{{end}}
<title>{{.Title}} · ghlsync</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
nav a{margin-right:1rem}
table{border-collapse:collapse;width:100%;margin-bottom:1.5rem}
th,td{border-bottom:1px solid #ddd;padding:.4rem .6rem;text-align:left;vertical-align:top}
th{background:#f5f5f5}
form.inline{display:inline}
.active,.refreshed,.completed{color:#1a7f37}
.needs_reauth,.uninstalled,.missing_scope,.key_missing,.failed,.paused,.error{color:#cf222e;font-weight:bold}
.inactive,.running{color:#9a6700}
.notice{background:#dafbe1;padding:.5rem}.error{background:#ffebe9;padding:.5rem}
small{color:#666}
</style></head><body>
<nav><a href="/">Overview</a>{{if .Schedules}}<a href="/schedules">Schedules</a>{{end}}<a href="/monitoring">Queues (asynqmon)</a><a href="/api/locations">JSON</a><a href="/api/auth/connect">Connect a location</a>
{{if eq .Role "viewer"}}<small>logged in as the viewer: read only</small>{{end}}</nav>
{{with .Notice}}<p class="notice" role="status">{{.}}</p>{{end}}
{{with .Error}}<p class="error" role="alert">{{.}}</p>{{end}}
{{range .Paused}}<p class="paused">Queue {{.}} is paused: none of its tasks run until it is resumed in <a href="/monitoring">asynqmon</a>.</p>
{{end}}{{template "content" .}}
</body></html>
{{define "csrf"}}<input type="hidden" name="csrf" value="{{.}}">{{end}}
`))

func page(content string) *template.Template {
	return template.Must(template.Must(layout.Clone()).Parse(`{{define "content"}}` + content + `{{end}}`))
}

var errorPage = page(`<p><a href="/">Back to the overview</a></p>`)

var overviewPage = page(`<h1>ghlsync</h1>
<p id="summary">{{.Summary}}</p>
{{if not .Locations}}<p id="empty">To connect the first location, open <a href="/api/auth/connect">Connect a location</a>: GHL asks you to pick the location
and approve ghlsync's access, then sends you back here (to GHL_REDIRECT_URI). An agency connects at
<a href="/api/auth/connect?user_type=Company">/api/auth/connect?user_type=Company</a>; its locations then follow.</p>
{{else}}<table id="locations">
<tr><th>Location</th><th>Status</th><th>Token expires</th><th>Last refresh</th>{{range .Kinds}}<th>Last {{.}} sync</th>{{end}}</tr>
{{range $l := .Locations}}<tr data-location="{{$l.LocationID}}">
<td><a href="/locations/{{$l.LocationID}}">{{if $l.Name}}{{$l.Name}}<br><small>{{$l.LocationID}}</small>{{else}}{{$l.LocationID}}{{end}}</a>{{if $l.Agency}} <small>(agency)</small>{{end}}</td>
<td><span class="{{$l.Status}}">{{$l.Status}}</span>{{with $l.ReconnectURL}} · <a href="{{.}}">Reconnect</a>{{end}}{{if $l.KeyMissing}} · <span class="key_missing">key missing</span><br><small>{{$l.KeyProblem}}</small>{{end}}{{with $l.LastError}}<br><small>{{.}}</small>{{end}}</td>
<td>{{if $l.TokenLive}}{{in $l.ExpiresInSeconds}}{{else}}<small>no live token</small>{{end}}</td>
<td>{{ago $.Now $l.LastRefreshAt}}</td>
{{range $k := $.Kinds}}<td>{{with index $l.Syncs $k}}<span class="{{.Outcome}}">{{.Outcome}}</span>, {{if .FinishedAt}}finished {{ago $.Now .FinishedAt}}{{else}}started {{rel $.Now .StartedAt}}{{end}}<br><small>{{.Scanned}} scanned, {{.Created}} created, {{.Updated}} updated, {{.Unchanged}} unchanged, {{.Failed}} failed</small>{{with .Error}}<br><small>{{.}}</small>{{end}}{{else}}{{if not $l.Agency}}never{{end}}{{end}}</td>{{end}}
</tr>{{end}}
</table>{{end}}`)

var locationPage = page(`{{$l := .L}}<h1>{{if $l.Name}}{{$l.Name}} <small>{{$l.LocationID}}</small>{{else}}{{$l.LocationID}}{{end}}{{if $l.Agency}} <small>(agency)</small>{{end}}</h1>
<p id="status">Status: <span class="{{$l.Status}}">{{$l.Status}}</span>{{with $l.Problem}}: {{.}}{{end}}{{with $l.ReconnectURL}} · <a href="{{.}}">Reconnect</a>{{end}}</p>
{{if $l.KeyMissing}}<p class="key_missing">Key missing: {{$l.KeyProblem}}</p>{{end}}
{{with $l.LastError}}<p>Last error: <small>{{.}}</small></p>{{end}}
<p>Time zone in GHL: {{with $l.Timezone}}{{.}}{{else}}<small>not known yet</small>{{end}}</p>
<p>Token: {{if $l.TokenLive}}expires {{in $l.ExpiresInSeconds}} ({{at $l.ExpiresAt}}){{else}}no live token{{end}} · last refresh {{ago .Now $l.LastRefreshAt}}{{with .Scopes}}<br><small>scopes: {{join . " "}}</small>{{end}}</p>
{{if and .Admin .Actions}}<p id="actions">{{range .Actions}}<form class="inline" method="post" action="/locations/{{$l.LocationID}}/{{.Name}}">{{template "csrf" $.CSRF}}<button type="submit" name="do" value="{{.Name}}">{{.Label}}</button></form> {{end}}</p>{{end}}

{{if not $l.Agency}}<h2>Settings</h2>
<table id="settings"><tr><th>Setting</th><th>Value</th></tr>
<tr><td>GHL's automations (confirmation SMS and email) for the appointments ghlsync writes</td><td>{{if .Settings.Notify}}on{{else}}off{{end}}</td></tr>
<tr><td>Phone region (numbers without a country code, addresses without a country)</td><td>{{.Settings.Region}}{{if not .Settings.PhoneRegion}} <small>(the default)</small>{{end}}</td></tr>
<tr><td>Fields sent to GHL (the allow-list)</td><td>{{with .Settings.Fields}}{{.}}{{else}}all <small>(the default)</small>{{end}}</td></tr>
<tr><td>Appointment title template</td><td>{{with .Settings.TitleTemplate}}<code>{{.}}</code>{{else}}none: the clinic's title <small>(the default)</small>{{end}}</td></tr>
<tr><td>Conflict policy (a contact changed in GHL and in the clinic)</td><td>{{.Settings.Conflicts}}{{if not .Settings.ConflictPolicy}} <small>(the default)</small>{{end}}</td></tr>
<tr><td>Custom field keys the location lacks (a patient's custom_fields)</td><td>{{if .Settings.RefuseCustomFields}}refused{{else}}created <small>(the default)</small>{{end}}</td></tr>
</table>
<p><small>Change them with <code>scheduler settings set {{$l.LocationID}} KEY VALUE</code>.</small></p>
{{with .Inbound}}<h2>Changes from GHL</h2>
<p id="inbox">The inbox (<code>ghl_changes</code>) holds {{.Changes}} changes of this location, {{.Pending}} not processed by the clinic yet.{{if .Conflicts}} <span class="failed">{{.Conflicts}} conflicts</span> were left alone in GHL (conflict_policy report): see the failed records below.{{end}}</p>
<p id="reconcile">Last reconciliation: {{with .LastReconcile}}{{at .StartedAt}} <small>{{rel $.Now .StartedAt}}</small>, <span class="{{.Outcome}}">{{with .Outcome}}{{.}}{{else}}running{{end}}</span>: {{.Contacts}} contacts in GHL, {{.Missing}} missing (sent again), {{.Duplicates}} duplicates, {{.Changes}} contact changes and {{.AppointmentChanges}} appointment changes no webhook delivered, {{.Calls}} GHL calls{{with .Error}}<br><small>{{.}}</small>{{end}}{{else}}none yet (<code>enqueue reconcile --location {{$l.LocationID}}</code>, or the nightly schedule){{end}}</p>{{end}}{{end}}

<h2>Failed records</h2>
{{if .Failed}}<p>{{.FailedTotal}} failed{{if gt .FailedTotal (len .Failed)}}; {{.FailedFrom}} to {{.FailedTo}} shown{{end}}. Each is tried again when it changes in the clinic's tables.</p>
<table id="failed"><tr><th>Kind</th><th>External id</th><th>Reason</th><th>Last tried</th></tr>
{{range .Failed}}<tr><td>{{.Kind}}</td><td>{{.ExternalID}}</td><td>{{.Reason}}</td><td>{{with .FailedAt}}{{at .}} <small>{{rel $.Now .}}</small>{{else}}unknown{{end}}</td></tr>
{{end}}</table>
{{if ge .FailedPrev 0}}<a href="?failed_page={{.FailedPrev}}">previous</a> {{end}}{{if ge .FailedNext 0}}<a href="?failed_page={{.FailedNext}}">next</a>{{end}}
{{else}}<p id="failed-none">None: every record of the last syncs went through.</p>{{end}}

<h2>Sync runs</h2>
{{if .Runs}}<table id="runs"><tr><th>Kind</th><th>Started</th><th>Took</th><th>Outcome</th><th>Counts</th><th>Task</th></tr>
{{range .Runs}}<tr data-run="{{.ID}}"><td>{{.Kind}}</td><td>{{at .StartedAt}} <small>{{rel $.Now .StartedAt}}</small></td><td>{{took .StartedAt .FinishedAt}}</td>
<td><span class="{{.Outcome}}">{{.Outcome}}</span>{{with .Error}}<br><small>{{.}}</small>{{end}}</td>
<td><small>{{.Scanned}} scanned, {{.Created}} created, {{.Updated}} updated, {{.Unchanged}} unchanged, {{.Failed}} failed{{with .Deleted}}, {{.}} deleted{{end}}</small></td><td><small>{{.TaskID}}</small></td></tr>
{{end}}</table>{{else}}<p>No sync has run yet.</p>{{end}}

<h2>Refreshes</h2>
{{if .Refreshes}}<table id="refreshes"><tr><th>When</th><th>Outcome</th><th>New token expires</th><th>Message</th></tr>
{{range .Refreshes}}<tr><td>{{at .At}} <small>{{rel $.Now .At}}</small></td><td><span class="{{.Outcome}}">{{.Outcome}}</span>{{with .Reason}} <small>({{.}})</small>{{end}}</td>
<td>{{with .ExpiresAt}}{{at .}}{{end}}</td><td><small>{{.Message}}</small></td></tr>
{{end}}</table>{{else}}<p>No refresh has been logged yet.</p>{{end}}`)

var schedulesPage = page(`<h1>Schedules</h1>
<p>The scheduler enqueues each schedule's task at its times; <code>scheduler list</code> shows the same.</p>
<table id="schedules"><tr><th>Name</th><th>Task</th><th>Queue</th><th>Schedule</th><th>Enabled</th><th>Last run</th><th>Next run</th><th>Runs</th>{{if .Admin}}<th>Change</th>{{end}}</tr>
{{range $s := .Schedules}}<tr data-schedule="{{$s.Name}}"><td>{{$s.Name}}</td><td>{{$s.TaskType}}</td><td>{{$s.Queue}}</td><td>{{$s.Spec}}</td><td>{{if $s.Enabled}}yes{{else}}no{{end}}</td>
<td>{{with $s.LastRunAt}}{{at .}} <small>{{rel $.Now .}}</small>{{else}}never{{end}}</td>
<td>{{with $s.Problem}}<span class="error">{{.}}</span>{{else}}{{if not $s.Enabled}}-{{else}}{{with $s.NextRunAt}}{{at .}} <small>{{rel $.Now .}}</small>{{else}}at once{{end}}{{end}}{{end}}</td>
<td>{{$s.TotalRuns}}</td>
{{if $.Admin}}<td><form method="post" action="/schedules/{{$s.Name}}/set">{{template "csrf" $.CSRF}}
{{if eq $.FormName $s.Name}}<label>every <input name="every" size="6" value="{{$.Every}}"></label> <label>or cron <input name="cron" size="12" value="{{$.Cron}}"></label> <label>in <input name="tz" size="10" value="{{$.TZ}}" placeholder="UTC"></label>
{{else}}<label>every <input name="every" size="6" value="{{$s.Every}}"></label> <label>or cron <input name="cron" size="12" value="{{$s.Cron}}"></label> <label>in <input name="tz" size="10" value="{{$s.TZ}}" placeholder="UTC"></label>
{{end}}<button type="submit">Change</button></form>
<form class="inline" method="post" action="/schedules/{{$s.Name}}/{{if $s.Enabled}}disable{{else}}enable{{end}}">{{template "csrf" $.CSRF}}<button type="submit">{{if $s.Enabled}}Disable{{else}}Enable{{end}}</button></form>
<form class="inline" method="post" action="/schedules/{{$s.Name}}/run">{{template "csrf" $.CSRF}}<button type="submit">Run now</button></form></td>{{end}}
</tr>{{end}}
</table>
{{if not .Schedules}}<p>No schedules: <code>scheduler setup</code> creates the defaults.</p>{{end}}`)
