// Package sandbox is the demo of `worker --standalone --sandbox`: an
// in-process fake GHL with three demo clinic locations, connected through
// ghlsync's real OAuth flow, and source tables seeded the way a clinic
// system would fill them.
package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/store"
)

// Locations are the sandbox's demo clinic: three locations of one company, each with a
// calendar, patients and appointments.
var Locations = []struct{ ID, Name string }{
	{"sandbox-clinic-north", "North Clinic"},
	{"sandbox-clinic-south", "South Clinic"},
	{"sandbox-clinic-east", "East Clinic"},
}

const (
	sandboxCompany      = "sandbox-company"
	sandboxPatients     = 120 // per location
	sandboxAppointments = 60  // per location
)

// Server is the in-process fake GHL of `worker --standalone --sandbox`,
// listening on loopback, with its state kept in a file: written before
// every answer that changed it, so that a process killed at any moment
// starts again with a GHL that holds every token it handed out and every
// record it accepted.
type Server struct {
	Fake      *ghltest.Server
	URL       string
	secret    string
	statePath string
	srv       *http.Server
}

// Start starts the fake GHL, loading its state from statePath when
// the file exists, and seeds the demo locations on a first start. log
// receives what the fake cannot answer: a state file it failed to write.
func Start(statePath string, log *slog.Logger) (*Server, error) {
	secret := make([]byte, 16)
	rand.Read(secret)
	fake, err := ghltest.Open(ghltest.Options{
		ClientID:     "sandbox-client",
		ClientSecret: hex.EncodeToString(secret),
		// Tokens that live an hour show refreshes within a demo.
		TokenLifetime:    time.Hour,
		EnforceRateLimit: true,
		StatePath:        statePath,
		SaveOnChange:     true,
		Logf:             func(format string, args ...any) { log.Error("sandbox: " + fmt.Sprintf(format, args...)) },
	})
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w (delete the file to start over)", err)
	}
	if len(fake.Locations()) == 0 {
		fake.AddCompany(sandboxCompany)
		for _, l := range Locations {
			fake.AddLocation(l.ID, sandboxCompany)
			fake.AddCalendar(l.ID, l.ID+"-cal", l.Name+" treatments")
		}
		// Whole or not at all: a start killed before this has no file
		// and seeds again.
		if err := fake.SaveFile(statePath); err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{Fake: fake, URL: "http://" + ln.Addr().String(), secret: hex.EncodeToString(secret), statePath: statePath,
		srv: &http.Server{Handler: fake.Handler(), ReadHeaderTimeout: 10 * time.Second}}
	go s.srv.Serve(ln)
	return s, nil
}

// ClientID is the sandbox app's client id.
func (s *Server) ClientID() string { return "sandbox-client" }

// ClientSecret is the sandbox app's secret, new at every start.
func (s *Server) ClientSecret() string { return s.secret }

// Close stops the fake and writes its state.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.srv.Shutdown(ctx)
	return s.Fake.SaveFile(s.statePath)
}

// Connect connects every demo location that is not yet connected through
// the real OAuth path: ghlsync's /api/auth/connect, the (fake) consent page
// choosing the location, and ghlsync's callback.
func (s *Server) Connect(ctx context.Context, st *store.Store, webURL string) ([]string, error) {
	client := &http.Client{
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	var connected []string
	for _, l := range Locations {
		if c, err := st.Credential(ctx, l.ID); err == nil && c.Status == store.StatusActive {
			continue
		}
		consent, err := redirect(ctx, client, webURL+"/api/auth/connect")
		if err != nil {
			return connected, fmt.Errorf("sandbox connect %s: %w", l.ID, err)
		}
		u, err := url.Parse(consent)
		if err != nil {
			return connected, err
		}
		q := u.Query()
		q.Set("location_id", l.ID) // the choice a user makes on the consent page
		u.RawQuery = q.Encode()
		callback, err := redirect(ctx, client, u.String())
		if err != nil {
			return connected, fmt.Errorf("sandbox consent %s: %w", l.ID, err)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, callback, nil)
		resp, err := client.Do(req)
		if err != nil {
			return connected, fmt.Errorf("sandbox callback %s: %w", l.ID, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return connected, fmt.Errorf("sandbox callback %s: status %d", l.ID, resp.StatusCode)
		}
		connected = append(connected, l.ID)
	}
	return connected, nil
}

func redirect(ctx context.Context, client *http.Client, target string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return "", fmt.Errorf("GET %s: status %d, want a redirect", req.URL.Path, resp.StatusCode)
	}
	return resp.Header.Get("Location"), nil
}

var (
	firstNames = []string{"Ava", "Ben", "Chloe", "Daniel", "Emma", "Felix", "Grace", "Hugo", "Isla", "Jack", "Lena", "Max", "Nora", "Oscar", "Ruby", "Theo"}
	lastNames  = []string{"Meyer", "Schmidt", "Keller", "Novak", "Rossi", "Dubois", "Jensen", "Silva", "Brown", "Weber", "Fischer", "Wagner"}
	cities     = []string{"Berlin", "Hamburg", "Munich", "Cologne", "Leipzig"}
	statuses   = []string{store.AppointmentBooked, store.AppointmentConfirmed, store.AppointmentAttended, store.AppointmentCancelled, store.AppointmentNoShow}
)

// Seed fills the clinic's source tables with demo patients and
// appointments on a first start (the way the clinic system would). Each
// table is filled in one insert, a transaction of its own, and only while
// empty: a start killed half way leaves a table whole or empty, and the
// next start fills what is empty.
func Seed(ctx context.Context, st *store.Store, now time.Time) error {
	var patients []store.Patient
	var appts []store.Appointment
	day := now.UTC().Truncate(24 * time.Hour)
	for li, l := range Locations {
		for i := range sandboxPatients {
			first, last := firstNames[(i+li)%len(firstNames)], lastNames[(i*7+li)%len(lastNames)]
			dob := time.Date(1950+(i*13)%55, time.Month(1+i%12), 1+i%28, 0, 0, 0, 0, time.UTC)
			p := store.Patient{
				LocationID: l.ID, ExternalID: fmt.Sprintf("P%05d", i+1),
				FirstName: first, LastName: last,
				Email:       fmt.Sprintf("%s.%s.%d@example.com", first, last, i+1),
				Phone:       fmt.Sprintf("+4930%07d", li*1000000+i+1),
				DateOfBirth: &dob, Address1: fmt.Sprintf("%d Demo Street", i+1),
				City: cities[i%len(cities)], PostalCode: fmt.Sprintf("1%04d", i), Country: "DE", UpdatedAt: now,
			}
			if i == 7 {
				// One record the clinic typed wrong: GHL refuses it and the
				// status page shows why, while the rest sync.
				p.Email = "not-an-email"
			}
			patients = append(patients, p)
		}
		for i := range sandboxAppointments {
			start := day.Add(time.Duration(i/6-3)*24*time.Hour + time.Duration(8+i%6)*time.Hour)
			appts = append(appts, store.Appointment{
				LocationID: l.ID, ExternalID: fmt.Sprintf("A%05d", i+1),
				PatientExternalID: fmt.Sprintf("P%05d", (i*2)%sandboxPatients+1), CalendarID: l.ID + "-cal",
				StartsAt: start, EndsAt: start.Add(45 * time.Minute), Title: "Physiotherapy",
				Status: statuses[i%len(statuses)], UpdatedAt: now,
			})
		}
	}
	if n, err := st.CountPatients(ctx); err != nil {
		return fmt.Errorf("sandbox patients: %w", err)
	} else if n == 0 {
		if err := st.InsertPatients(ctx, patients); err != nil {
			return fmt.Errorf("sandbox patients: %w", err)
		}
	}
	if n, err := st.CountAppointments(ctx); err != nil {
		return fmt.Errorf("sandbox appointments: %w", err)
	} else if n == 0 {
		if err := st.InsertAppointments(ctx, appts); err != nil {
			return fmt.Errorf("sandbox appointments: %w", err)
		}
	}
	return nil
}
