package sandbox

import (
	"bytes"
	"html/template"
	"net/http"
	"slices"
	"strings"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
)

// PagePath is where the standalone process serves Page.
const PagePath = "/sandbox"

var page = template.Must(template.New("sandbox").Funcs(template.FuncMap{
	"short": func(s string) string { // an ISO time without seconds and offset noise
		if len(s) >= 16 {
			return strings.Replace(s[:16], "T", " ", 1)
		}
		return s
	},
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>ghlsync sandbox: the fake GHL's side</title>
<style>body{font-family:sans-serif;margin:1.5rem}table{border-collapse:collapse;margin-bottom:1rem}
td,th{border:1px solid #ccc;padding:.15rem .5rem;text-align:left;font-size:.9rem}
details{margin:.5rem 0}summary{cursor:pointer}</style></head>
<body><h1>The fake GHL's side</h1>
<p>What the sandbox's fake GoHighLevel holds: the contacts and appointments ghlsync has pushed into it,
per demo location, as GHL would show them. This page reloads every 5 seconds, so you see the data arrive.
ghlsync's own view is the <a href="/">status page</a>; connect an account with the fake GHL's chooser at
<a href="/api/auth/connect">/api/auth/connect</a>.</p>
<table><tr><th>location</th><th>name</th><th>contacts</th><th>appointments</th></tr>
{{range .}}<tr><td><a href="#{{.ID}}">{{.ID}}</a></td><td>{{.Name}}</td><td>{{len .Contacts}}</td><td>{{len .Appointments}}</td></tr>
{{end}}</table>
{{range .}}<h2 id="{{.ID}}">{{.Name}} <small>({{.ID}})</small></h2>
<details{{if .Open}} open{{end}}><summary>{{len .Contacts}} contacts</summary>
{{with .Contacts}}<table><tr><th>id</th><th>name</th><th>email</th><th>phone</th><th>city</th><th>date of birth</th><th>updated</th></tr>
{{range .}}<tr><td>{{.ID}}</td><td>{{.FirstName}} {{.LastName}}</td><td>{{.Email}}</td><td>{{.Phone}}</td><td>{{.City}}</td><td>{{.DateOfBirth}}</td><td>{{.DateUpdated.Format "2006-01-02 15:04:05"}}</td></tr>
{{end}}</table>{{else}}<p>None yet.</p>{{end}}</details>
<details{{if .Open}} open{{end}}><summary>{{len .Appointments}} appointments</summary>
{{with .Appointments}}<table><tr><th>id</th><th>start</th><th>end</th><th>title</th><th>status</th><th>contact</th></tr>
{{range .}}<tr><td>{{.ID}}</td><td>{{short .StartTime}}</td><td>{{short .EndTime}}</td><td>{{.Title}}</td><td>{{.AppointmentStatus}}</td><td>{{.Contact}}</td></tr>
{{end}}</table>{{else}}<p>None yet.</p>{{end}}</details>
{{end}}</body></html>
`))

type pageLocation struct {
	ID, Name     string
	Open         bool
	Contacts     []ghltest.Contact
	Appointments []pageAppointment
}

type pageAppointment struct {
	ghltest.Appointment
	// Contact names the appointment's contact, or gives its id when the
	// fake holds no such contact.
	Contact string
}

// Page serves the fake GHL's side of the sandbox: per demo location, the
// contacts and appointments it holds. It shows no token.
func (s *Server) Page() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var locs []pageLocation
		for i, l := range Locations {
			pl := pageLocation{ID: l.ID, Name: l.Name, Open: i == 0, Contacts: s.Fake.Contacts(l.ID)}
			names := map[string]string{}
			for _, c := range pl.Contacts {
				names[c.ID] = strings.TrimSpace(c.FirstName + " " + c.LastName)
			}
			for _, a := range s.Fake.Appointments(l.ID) {
				name := names[a.ContactID]
				if name == "" {
					name = a.ContactID
				}
				pl.Appointments = append(pl.Appointments, pageAppointment{a, name})
			}
			slices.SortStableFunc(pl.Appointments, func(a, b pageAppointment) int { return strings.Compare(a.StartTime, b.StartTime) })
			locs = append(locs, pl)
		}
		var b bytes.Buffer
		if err := page.Execute(&b, locs); err != nil {
			http.Error(w, "rendering the sandbox page: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(b.Bytes())
	})
}
