package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/app/sandbox"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/tasks"
)

// The sandbox's numbers: per location 120 patients, of which GHL refuses
// one (a bad email), and 60 appointments.
const (
	killContacts     = 119
	killAppointments = 60
	killLives        = 10
	// killLifeCap bounds one life, so that the ten fit in the first minute.
	killLifeCap = 6 * time.Second
)

// fakeCounts is what the fake GHL's state file shows, read the way a
// restarted fake reads it.
type fakeCounts struct {
	records   int // contacts and appointments
	rotations int // refresh tokens spent
}

// fakeWatcher reads the counts from the state file, parsing it again only
// when it was replaced.
type fakeWatcher struct {
	path  string
	mod   time.Time
	size  int64
	last  fakeCounts
	found bool
}

func (w *fakeWatcher) counts() fakeCounts {
	fi, err := os.Stat(w.path)
	if err != nil || (w.found && fi.ModTime().Equal(w.mod) && fi.Size() == w.size) {
		return w.last
	}
	b, err := os.ReadFile(w.path)
	if err != nil {
		return w.last
	}
	var f struct {
		Contacts      []json.RawMessage `json:"contacts"`
		Appointments  []json.RawMessage `json:"appointments"`
		RefreshTokens []struct {
			Next string `json:"next"`
		} `json:"refreshTokens"`
	}
	if json.Unmarshal(b, &f) != nil {
		return w.last
	}
	c := fakeCounts{records: len(f.Contacts) + len(f.Appointments)}
	for _, rt := range f.RefreshTokens {
		if rt.Next != "" {
			c.rotations++
		}
	}
	w.mod, w.size, w.last, w.found = fi.ModTime(), fi.Size(), c, true
	return c
}

// loadFake loads the fake GHL a restart would start with.
func loadFake(t *testing.T, path string) *ghltest.Server {
	t.Helper()
	fake, err := ghltest.Open(ghltest.Options{StatePath: path})
	if err != nil {
		t.Fatal(err)
	}
	return fake
}

// dbState is ghlsync's side of each location: its status, and whether it
// holds the refresh token the fake GHL holds as current.
type dbState struct {
	status  map[string]store.Status
	holding map[string]bool
}

// readDB reads the credentials of a stopped (or killed) process; empty when
// that process had not got as far as writing any.
func readDB(t *testing.T, dir, dbURL string, fake *ghltest.Server) dbState {
	t.Helper()
	s := dbState{status: map[string]store.Status{}, holding: map[string]bool{}}
	key, err := os.ReadFile(filepath.Join(dir, "ghlsync.key"))
	if err != nil {
		return s
	}
	cipher, err := (&config.Config{EncryptionKey: strings.TrimSpace(string(key))}).Cipher()
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), dbURL, cipher)
	if err != nil {
		return s
	}
	defer st.Close()
	creds, err := st.Credentials(context.Background())
	if err != nil {
		return s // killed before the migration made the table
	}
	for _, c := range creds {
		s.status[c.LocationID] = c.Status
		if toks, err := st.Tokens(&c); err == nil && fake != nil {
			s.holding[c.LocationID] = toks.RefreshToken == fake.CurrentRefreshToken(c.LocationID)
		}
	}
	return s
}

// moment is a moment of a life to kill the process at: when ready says
// so. atBanner, if set, is done once the banner shows.
type moment struct {
	name     string
	atBanner func()
	ready    func(life time.Duration, banner bool, c fakeCounts) bool
}

const (
	momentDelay = iota
	momentBanner
	momentRecords
	momentRotation
	moments
)

// pickMoment draws the moment of one kill: a random delay after the start
// (key file, migration, seeding, connecting, syncing), the banner, a
// random number of records GHL holds, or a token rotation: forced
// refreshes of every location are enqueued (through refresh, which puts
// the tasks in the embedded Redis) and the process is killed as soon as
// the fake GHL has made the first rotation durable, when ghlsync has at
// most just stored it (or not heard the answer at all).
func pickMoment(rng *rand.Rand, kind int, base fakeCounts, refresh func() fakeCounts) moment {
	total := len(sandbox.Locations) * (killContacts + killAppointments)
	switch kind {
	case momentDelay:
		d := time.Duration(rng.IntN(int(killLifeCap/time.Millisecond))) * time.Millisecond
		return moment{name: fmt.Sprintf("%s after the start", d), ready: func(life time.Duration, _ bool, _ fakeCounts) bool { return life >= d }}
	case momentBanner:
		return moment{name: "the banner", ready: func(_ time.Duration, banner bool, _ fakeCounts) bool { return banner }}
	case momentRecords:
		target := base.records + 1 + rng.IntN(max(total-base.records, 1))
		return moment{name: fmt.Sprintf("GHL holding %d records", target), ready: func(_ time.Duration, _ bool, c fakeCounts) bool { return c.records >= target }}
	}
	var before *fakeCounts
	return moment{name: "the first rotation of enqueued forced refreshes made durable",
		atBanner: func() { c := refresh(); before = &c },
		ready: func(_ time.Duration, _ bool, c fakeCounts) bool {
			return before != nil && c.rotations > before.rotations
		}}
}

// The standalone sandbox, killed with SIGKILL at ten random moments of
// its first minute and started again each time, ends with every location
// active, ghlsync holding the refresh token GHL holds, and GHL holding
// exactly the source tables: each patient once as a contact (the one GHL
// refuses not at all), each appointment once, for its patient's contact.
// The moments are seeded; GHLSYNC_KILL_SEED repeats a run's.
func TestSandboxSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("GHLSYNC_KILL_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("GHLSYNC_KILL_SEED: %v", err)
		}
	}
	t.Logf("kill moments seeded with %d (GHLSYNC_KILL_SEED=%d repeats them)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	dir := t.TempDir()
	webAddr, redisAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	dbURL := "sqlite://" + filepath.Join(dir, "ghlsync.db")
	env := map[string]string{"DATABASE_URL": dbURL, "WEB_ADDR": webAddr, "METRICS_ADDR": "127.0.0.1:0",
		"TOKEN_ENCRYPTION_KEY": "", "REDIS_URL": ""}
	statePath := filepath.Join(dir, "ghlsync-sandbox.json")
	start := func() *testenv.Process {
		return testenv.StartProcess(t, "worker", env, "--standalone", "--sandbox", "--redis-addr", redisAddr)
	}
	watch := &fakeWatcher{path: statePath}

	var lived time.Duration
	behind := 0 // kills after which ghlsync lacked the token GHL had rotated to
	active := map[string]bool{}
	// The REDIS_URL of the first start, used in every later life: the
	// embedded Redis is at the same address at every start.
	var client *asynq.Client
	refreshAll := func() fakeCounts {
		c := watch.counts()
		for _, l := range sandbox.Locations {
			task, err := tasks.NewRefreshTask(l.ID, true, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := client.Enqueue(task); err != nil {
				t.Fatalf("enqueue through the REDIS_URL the first start printed: %v", err)
			}
		}
		return c
	}
	for i := range killLives {
		kind := rng.IntN(moments)
		if i == killLives-1 {
			// The last kill comes at the most dangerous moment, with no
			// refresh asked for after it: a rotation ghlsync may not
			// have stored has only the start's own recovery to save it.
			kind = momentRotation
		}
		m := pickMoment(rng, kind, watch.counts(), refreshAll)
		p := start()
		began := time.Now()
		cause := "the moment came"
		bannered := false
		for {
			life := time.Since(began)
			banner := strings.Contains(p.Output.String(), "ghlsync standalone is running")
			if banner && !bannered {
				bannered = true
				if client == nil {
					opt, err := asynq.ParseRedisURI(bannerValue(t, p, "REDIS_URL"))
					if err != nil {
						t.Fatal(err)
					}
					client = asynq.NewClient(opt)
					defer client.Close()
				} else if got := bannerValue(t, p, "REDIS_URL"); got != "redis://"+redisAddr+"/0" {
					t.Fatalf("life %d: REDIS_URL=%s, want the first start's at %s", i+1, got, redisAddr)
				}
				if m.atBanner != nil {
					m.atBanner()
				}
			}
			if m.ready(life, banner, watch.counts()) {
				break
			}
			if life > killLifeCap {
				cause = "the cap came first"
				break
			}
			select {
			case <-p.Done():
				t.Fatalf("life %d ended by itself:\n%s", i+1, p.Output)
			case <-time.After(2 * time.Millisecond):
			}
		}
		p.Kill()
		life := time.Since(began)
		lived += life

		var fake *ghltest.Server
		if _, err := os.Stat(statePath); err == nil {
			fake = loadFake(t, statePath)
		}
		db := readDB(t, dir, dbURL, fake)
		var locs []string
		for _, l := range sandbox.Locations {
			locs = append(locs, fmt.Sprintf("%s=%s", l.ID, db.status[l.ID]))
			if s, ok := db.status[l.ID]; ok && s != store.StatusActive {
				t.Fatalf("kill %d: %s is %s; the output of that life:\n%s", i+1, l.ID, s, p.Output)
			}
			if active[l.ID] && db.status[l.ID] != store.StatusActive {
				t.Fatalf("kill %d: %s was active and is gone", i+1, l.ID)
			}
			if db.status[l.ID] == store.StatusActive {
				active[l.ID] = true
				if !db.holding[l.ID] {
					behind++
				}
			}
		}
		c := watch.counts()
		t.Logf("kill %d at %.2fs of its life, at %s (%s): GHL holds %d records, has rotated %d tokens; %s",
			i+1, life.Seconds(), m.name, cause, c.records, c.rotations, strings.Join(locs, " "))
		if strings.Contains(p.Output.String(), "the location must be connected again") {
			t.Fatalf("kill %d: a location was refused:\n%s", i+1, p.Output)
		}
	}
	t.Logf("%d kills within %.1fs of running; after %d of the location states, ghlsync held a token GHL had since rotated",
		killLives, lived.Seconds(), behind)
	if lived > time.Minute+5*time.Second {
		t.Errorf("the lives took %.1fs, not the first minute", lived.Seconds())
	}

	final := start()
	finalStart := time.Now()
	raw := storetest.DB(t, dbURL)
	count := func(query string) int64 {
		var n int64
		if err := raw.Raw(query).Scan(&n).Error; err != nil {
			return -1
		}
		return n
	}
	nLocs := len(sandbox.Locations)
	testenv.Eventually(t, 2*time.Minute, "every location active, synced, and recorded", func() bool {
		for _, l := range locations(t, webAddr) {
			if l.Status != store.StatusActive {
				return false
			}
		}
		return len(locations(t, webAddr)) == nLocs &&
			watch.counts().records == nLocs*(killContacts+killAppointments) &&
			count("SELECT count(*) FROM sync_patients WHERE contact_id <> ''") == int64(nLocs*killContacts) &&
			count("SELECT count(*) FROM sync_appointments WHERE event_id <> ''") == int64(nLocs*killAppointments)
	})
	t.Logf("the last start completed the sync %.1fs after it began", time.Since(finalStart).Seconds())
	if code := final.Stop(30 * time.Second); code != 0 {
		t.Fatalf("the last run's exit status %d after SIGTERM", code)
	}

	fake := loadFake(t, statePath)
	db := readDB(t, dir, dbURL, fake)
	for _, l := range sandbox.Locations {
		if db.status[l.ID] != store.StatusActive || !db.holding[l.ID] {
			t.Errorf("%s: status %q, holds GHL's current refresh token: %v", l.ID, db.status[l.ID], db.holding[l.ID])
		}
	}
	checkGHLHoldsTheTables(t, dbURL, fake)
}

// apptStatus maps the clinic's appointment status to GHL's.
var apptStatus = map[string]string{
	store.AppointmentBooked: "new", store.AppointmentConfirmed: "confirmed", store.AppointmentCancelled: "cancelled",
	store.AppointmentAttended: "showed", store.AppointmentNoShow: "noshow",
}

// checkGHLHoldsTheTables compares the fake GHL with the source tables and
// ghlsync's records of them: one contact per patient GHL accepted, one
// appointment per appointment, nothing else, and ghlsync's ids naming them.
func checkGHLHoldsTheTables(t *testing.T, dbURL string, fake *ghltest.Server) {
	t.Helper()
	raw := storetest.DB(t, dbURL)
	var patients []store.Patient
	var appts []store.Appointment
	var patientSyncs []store.PatientSync
	var apptSyncs []store.AppointmentSync
	for _, q := range []any{&patients, &appts, &patientSyncs, &apptSyncs} {
		if err := raw.Find(q).Error; err != nil {
			t.Fatal(err)
		}
	}
	contactOf := map[[2]string]string{} // location, patient -> contact
	for _, ps := range patientSyncs {
		contactOf[[2]string{ps.LocationID, ps.ExternalID}] = ps.ContactID
	}
	eventOf := map[[2]string]string{}
	for _, as := range apptSyncs {
		eventOf[[2]string{as.LocationID, as.ExternalID}] = as.EventID
	}

	for _, l := range sandbox.Locations {
		contacts := map[string]ghltest.Contact{} // by id
		byEmail, byPhone := map[string]int{}, map[string]int{}
		for _, c := range fake.Contacts(l.ID) {
			contacts[c.ID] = c
			byEmail[strings.ToLower(c.Email)]++
			byPhone[c.Phone]++
		}
		for k, n := range byEmail {
			if n > 1 {
				t.Errorf("%s: %d contacts with the email %q", l.ID, n, k)
			}
		}
		for k, n := range byPhone {
			if n > 1 {
				t.Errorf("%s: %d contacts with the phone %q", l.ID, n, k)
			}
		}
		seen := map[string]string{} // contact -> patient
		for _, p := range patients {
			if p.LocationID != l.ID {
				continue
			}
			id := contactOf[[2]string{l.ID, p.ExternalID}]
			if p.Email == "not-an-email" {
				if id != "" {
					t.Errorf("%s %s: GHL refuses its email, yet ghlsync records the contact %s", l.ID, p.ExternalID, id)
				}
				continue
			}
			c, ok := contacts[id]
			if !ok {
				t.Errorf("%s %s: ghlsync records the contact %q, which GHL does not hold", l.ID, p.ExternalID, id)
				continue
			}
			if other, dup := seen[id]; dup {
				t.Errorf("%s: patients %s and %s share the contact %s", l.ID, other, p.ExternalID, id)
			}
			seen[id] = p.ExternalID
			want := [...]string{p.FirstName, p.LastName, strings.ToLower(p.Email), p.Phone, p.Address1, p.City, p.PostalCode, p.Country, p.DateOfBirth.Format(time.DateOnly)}
			got := [...]string{c.FirstName, c.LastName, strings.ToLower(c.Email), c.Phone, c.Address1, c.City, c.PostalCode, c.Country, c.DateOfBirth}
			if want != got {
				t.Errorf("%s %s: GHL's contact %v, the table's patient %v", l.ID, p.ExternalID, got, want)
			}
		}
		if len(seen) != len(contacts) {
			t.Errorf("%s: GHL holds %d contacts, %d of them of a patient", l.ID, len(contacts), len(seen))
		}

		events := map[string]ghltest.Appointment{}
		slots := map[string]int{}
		for _, a := range fake.Appointments(l.ID) {
			events[a.ID] = a
			slots[a.CalendarID+" "+a.ContactID+" "+a.StartTime]++
		}
		for k, n := range slots {
			if n > 1 {
				t.Errorf("%s: %d appointments at %s", l.ID, n, k)
			}
		}
		booked := map[string]bool{}
		for _, a := range appts {
			if a.LocationID != l.ID {
				continue
			}
			id := eventOf[[2]string{l.ID, a.ExternalID}]
			e, ok := events[id]
			if !ok {
				t.Errorf("%s %s: ghlsync records the appointment %q, which GHL does not hold", l.ID, a.ExternalID, id)
				continue
			}
			booked[id] = true
			start, err1 := time.Parse(time.RFC3339, e.StartTime)
			end, err2 := time.Parse(time.RFC3339, e.EndTime)
			if err1 != nil || err2 != nil || !start.Equal(a.StartsAt) || !end.Equal(a.EndsAt) ||
				e.CalendarID != a.CalendarID || e.ContactID != contactOf[[2]string{l.ID, a.PatientExternalID}] ||
				e.AppointmentStatus != apptStatus[a.Status] {
				t.Errorf("%s %s: GHL's appointment %+v, the table's %+v (patient's contact %s)",
					l.ID, a.ExternalID, e, a, contactOf[[2]string{l.ID, a.PatientExternalID}])
			}
		}
		if len(booked) != len(events) {
			t.Errorf("%s: GHL holds %d appointments, %d of them of the table", l.ID, len(events), len(booked))
		}
		if len(booked) != killAppointments || len(seen) != killContacts {
			t.Errorf("%s: %d appointments and %d contacts of the tables in GHL, want %d and %d",
				l.ID, len(booked), len(seen), killAppointments, killContacts)
		}
	}
}
