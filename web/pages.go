package web

import (
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/syncer"
)

// pages renders the operator's pages of a Status.
type pages struct {
	*Status
	sign signer
}

// How much history a location's page shows.
const (
	recentRefreshes = 20
	recentSyncRuns  = 30
	failedPerPage   = 100
)

// frame is what every page shows around its own content.
type frame struct {
	Title string
	Now   time.Time
	// Role is the login's; only the admin gets forms, each with CSRF.
	Role          Role
	CSRF          string
	Notice, Error string
	Paused        []string
	// Refresh reloads the page every so many seconds (0: never): the
	// overview and a location's page follow what the workers do.
	Refresh   int
	Schedules bool
}

// Admin reports whether the page is for the admin, who gets its forms.
func (f frame) Admin() bool { return f.Role == RoleAdmin }

func (p *pages) frame(w http.ResponseWriter, r *http.Request, title string) frame {
	f := frame{Title: title, Now: clock.Or(p.Clock).Now(), Schedules: p.Schedules != nil}
	if sess, ok := sessionOf(r.Context()); ok {
		f.Role = sess.role
		if sess.role == RoleAdmin {
			f.CSRF = p.sign.token(sess)
		}
		f.Notice = p.sign.takeNotice(w, r, sess, p.secure(r))
	}
	if p.PausedQueues != nil {
		paused, err := p.PausedQueues(r.Context())
		if err != nil {
			p.log().Warn("status: reading the queues", "err", err)
		}
		f.Paused = paused
	}
	return f
}

// secure says whether cookies must be kept to HTTPS: the request came
// over TLS, or through the public https origin.
func (p *pages) secure(r *http.Request) bool {
	return r.TLS != nil || (strings.HasPrefix(p.PublicURL, "https://") && !loopbackName(r.Host))
}

func (p *pages) render(w http.ResponseWriter, t *template.Template, code int, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if err := t.Execute(w, data); err != nil {
		p.log().Warn("status: rendering", "page", t.Name(), "err", err)
	}
}

// fail shows a page that says what went wrong, with code.
func (p *pages) fail(w http.ResponseWriter, r *http.Request, code int, msg string) {
	f := p.frame(w, r, http.StatusText(code))
	f.Error = msg
	p.render(w, errorPage, code, struct{ frame }{f})
}

func (p *pages) overview(w http.ResponseWriter, r *http.Request) {
	locs, err := p.Locations(r.Context())
	if err != nil {
		p.log().Error("status: reading locations", "err", err)
		p.fail(w, r, http.StatusServiceUnavailable, "cannot read the locations now: the database does not answer")
		return
	}
	f := p.frame(w, r, "ghlsync")
	f.Refresh = 30
	p.render(w, overviewPage, http.StatusOK, struct {
		frame
		Summary   string
		Locations []LocationStatus
		Kinds     []string
	}{f, summary(locs), locs, syncer.Kinds})
}

// locationData is a location's page.
type locationData struct {
	frame
	L         LocationStatus
	Scopes    []string
	Settings  store.LocationSettings
	Refreshes []store.RefreshRun
	Runs      []store.SyncRun
	Failed    []store.FailedRecord
	// FailedTotal is how many records failed; FailedFrom and FailedTo
	// number the first and last shown, from 1; FailedPrev and FailedNext
	// are the pages before and after, -1 for none.
	FailedTotal            int64
	FailedFrom, FailedTo   int
	FailedPrev, FailedNext int
	Actions                []struct{ Name, Label string }
	// Inbound is the inbox and the last reconciliation, nil when the
	// source has none.
	Inbound *store.InboundStatus
}

func (p *pages) location(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	c, err := p.Source.Credential(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		p.fail(w, r, http.StatusNotFound, fmt.Sprintf("no connected location has the id %q", id))
		return
	}
	if err != nil {
		p.log().Error("status: reading a location", "location", id, "err", err)
		p.fail(w, r, http.StatusServiceUnavailable, "cannot read the location now: the database does not answer")
		return
	}
	d := locationData{Scopes: strings.Fields(c.Scopes), FailedPrev: -1, FailedNext: -1}
	page, _ := strconv.Atoi(r.URL.Query().Get("failed_page"))
	page = max(page, 0)
	err = func() (err error) {
		if d.L, err = p.locationStatus(ctx, c); err != nil {
			return err
		}
		if d.Settings, err = p.Source.Settings(ctx, id); err != nil {
			return err
		}
		if d.Inbound, err = p.inboundStatus(ctx, id); err != nil {
			return err
		}
		if d.Refreshes, err = p.Source.RefreshRuns(ctx, id, recentRefreshes); err != nil {
			return err
		}
		if d.Runs, err = p.Source.SyncRuns(ctx, id, "", recentSyncRuns); err != nil {
			return err
		}
		d.Failed, d.FailedTotal, err = p.Source.FailedRecords(ctx, id, page*failedPerPage, failedPerPage)
		return err
	}()
	if err != nil {
		p.log().Error("status: reading a location", "location", id, "err", err)
		p.fail(w, r, http.StatusServiceUnavailable, "cannot read the location now: the database does not answer")
		return
	}
	d.FailedFrom = page*failedPerPage + 1
	d.FailedTo = page*failedPerPage + len(d.Failed)
	if page > 0 {
		d.FailedPrev = page - 1
	}
	if int64((page+1)*failedPerPage) < d.FailedTotal {
		d.FailedNext = page + 1
	}
	if p.Actions != nil {
		for _, a := range ActionNames {
			if a.Name == ActionRefresh || !d.L.Agency() {
				d.Actions = append(d.Actions, a)
			}
		}
	}
	d.frame = p.frame(w, r, d.L.Title())
	d.frame.Refresh = 30
	p.render(w, locationPage, http.StatusOK, d)
}

// form checks a POST from one of the pages: it comes from the admin, with
// a token of the admin's login. It answers the request itself, and
// returns false, when not.
func (p *pages) form(w http.ResponseWriter, r *http.Request) (session, bool) {
	sess, ok := sessionOf(r.Context())
	if !ok || sess.role != RoleAdmin {
		// The guard refuses viewers first; this is a request that
		// never passed it.
		p.fail(w, r, http.StatusForbidden, "only the admin changes things")
		return sess, false
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		p.fail(w, r, http.StatusBadRequest, "the form could not be read")
		return sess, false
	}
	if !p.sign.check(sess, r.PostForm.Get("csrf")) {
		p.fail(w, r, http.StatusForbidden, "the form has expired, or did not come from ghlsync's own page: reload the page and try again")
		return sess, false
	}
	return sess, true
}

func (p *pages) act(w http.ResponseWriter, r *http.Request) {
	id, action := r.PathValue("id"), r.PathValue("action")
	if p.Actions == nil || !slices.ContainsFunc(ActionNames, func(a struct{ Name, Label string }) bool { return a.Name == action }) {
		p.fail(w, r, http.StatusNotFound, fmt.Sprintf("no action %q (one of refresh, sync-patients, sync-appointments)", action))
		return
	}
	sess, ok := p.form(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	c, err := p.Source.Credential(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		p.fail(w, r, http.StatusNotFound, fmt.Sprintf("no connected location has the id %q", id))
		return
	}
	if err != nil {
		p.log().Error("status: reading a location", "location", id, "err", err)
		p.fail(w, r, http.StatusServiceUnavailable, "cannot read the location now: the database does not answer")
		return
	}
	if action != ActionRefresh && c.UserType == store.UserTypeCompany {
		p.fail(w, r, http.StatusBadRequest, "an agency has no patients or appointments of its own: sync its locations")
		return
	}
	enq, err := p.Actions.Enqueue(ctx, action, id)
	var bad *InputError
	if errors.As(err, &bad) {
		p.fail(w, r, http.StatusBadRequest, fmt.Sprintf("%s for location %s: %s", action, id, bad.Error()))
		return
	}
	if err != nil {
		p.log().Error("status: enqueueing", "action", action, "location", id, "err", err)
		p.fail(w, r, http.StatusServiceUnavailable, fmt.Sprintf("could not enqueue %s for location %s: %s", action, id, config.RedactText(err.Error())))
		return
	}
	p.log().Info("enqueued from the web", "action", action, "location", id, "task_id", enq.TaskID, "queue", enq.Queue)
	p.sign.setNotice(w, sess, fmt.Sprintf("%s of location %s enqueued as task %s (queue %s); its run shows here once a worker has taken it.",
		action, id, enq.TaskID, enq.Queue), p.secure(r))
	http.Redirect(w, r, "/locations/"+url.PathEscape(id), http.StatusSeeOther)
}

// schedulesData is the schedules page.
type schedulesData struct {
	frame
	Schedules []ScheduleView
	// Form is what the operator typed into the form that failed, to
	// show it again.
	FormName, Every, Cron, TZ string
}

func (p *pages) schedules(w http.ResponseWriter, r *http.Request) {
	p.showSchedules(w, r, http.StatusOK, schedulesData{})
}

func (p *pages) showSchedules(w http.ResponseWriter, r *http.Request, code int, d schedulesData) {
	if p.Schedules == nil {
		p.fail(w, r, http.StatusNotFound, "this process serves no schedules page")
		return
	}
	list, err := p.Schedules.List(r.Context())
	if err != nil {
		p.log().Error("status: reading the schedules", "err", err)
		p.fail(w, r, http.StatusServiceUnavailable, "cannot read the schedules now: the database does not answer")
		return
	}
	d.Schedules = list
	msg := d.Error
	d.frame = p.frame(w, r, "Schedules")
	d.Error = msg
	p.render(w, schedulesPage, code, d)
}

func (p *pages) changeSchedule(w http.ResponseWriter, r *http.Request) {
	if p.Schedules == nil {
		p.fail(w, r, http.StatusNotFound, "this process serves no schedules page")
		return
	}
	name, action := r.PathValue("name"), r.PathValue("action")
	sess, ok := p.form(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	every, cron, tz := strings.TrimSpace(r.PostForm.Get("every")), strings.TrimSpace(r.PostForm.Get("cron")), strings.TrimSpace(r.PostForm.Get("tz"))
	var msg string
	var err error
	switch action {
	case "set":
		msg, err = p.Schedules.Set(ctx, name, every, cron, tz)
	case "enable", "disable":
		msg, err = p.Schedules.SetEnabled(ctx, name, action == "enable")
	case "run":
		msg, err = p.Schedules.RunNow(ctx, name)
	default:
		p.fail(w, r, http.StatusNotFound, fmt.Sprintf("no schedule action %q (one of set, enable, disable, run)", action))
		return
	}
	var bad *InputError
	switch {
	case errors.As(err, &bad):
		// The command line's words, on the page: the form keeps what
		// was typed, so the mistake can be mended.
		p.showSchedules(w, r, http.StatusBadRequest, schedulesData{frame: frame{Error: name + ": " + bad.Error()},
			FormName: name, Every: every, Cron: cron, TZ: tz})
		return
	case err != nil:
		p.log().Error("status: changing a schedule", "schedule", name, "action", action, "err", err)
		p.fail(w, r, http.StatusServiceUnavailable, fmt.Sprintf("could not %s schedule %s: %s", action, name, config.RedactText(err.Error())))
		return
	}
	p.log().Info("schedule changed from the web", "schedule", name, "action", action, "result", msg)
	p.sign.setNotice(w, sess, msg, p.secure(r))
	http.Redirect(w, r, "/schedules", http.StatusSeeOther)
}
