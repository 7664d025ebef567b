package tasks_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/refresh"
	"github.com/ghlsync/ghlsync/tasks"
)

// countingRenewer counts the refreshes it is asked for.
type countingRenewer struct{ calls int }

func (r *countingRenewer) Refresh(ctx context.Context, req refresh.Request) (refresh.Result, error) {
	r.calls++
	return refresh.Result{LocationID: req.LocationID, Outcome: refresh.Fresh}, nil
}

// badLocationIDs are location ids no location has.
var badLocationIDs = map[string]string{
	"NUL":          "loc\x00A",
	"newline":      "loc\nA",
	"escape":       "loc\x1b[2J",
	"invalid UTF8": "loc\xff",
	"too long":     strings.Repeat("l", 256),
}

// A task whose location id holds a NUL or another control character, or
// is longer than any id, is refused for good (SkipRetry), with a line
// that says why, and reaches neither the refresher nor the sync engine;
// the constructors refuse to make one.
func TestBadLocationIDsAreRefused(t *testing.T) {
	t.Parallel()
	for name, loc := range badLocationIDs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := &countingRenewer{}
			h := &tasks.TokenHandlers{Refresher: r}
			payload := `{"location_id":` + jsonString(loc) + `,"requested_at":"2026-01-01T00:00:00Z"}`
			err := h.HandleRefresh(context.Background(), asynq.NewTask(tasks.TypeTokenRefresh, []byte(payload)))
			if !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "location id") || strings.ContainsAny(err.Error(), "\x00\n\x1b") {
				t.Errorf("HandleRefresh: %q, want a one-line refusal with SkipRetry", err)
			}
			if r.calls != 0 {
				t.Errorf("the refresher was called %d times", r.calls)
			}

			sh := &tasks.SyncHandlers{}
			for _, typ := range []string{tasks.TypePatientsSync, tasks.TypeAppointmentsSync} {
				err := sh.HandlePatientsSync(context.Background(), asynq.NewTask(typ, []byte(`{"location_id":`+jsonString(loc)+`}`)))
				if !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "location id") {
					t.Errorf("%s: %v, want a refusal with SkipRetry", typ, err)
				}
			}

			if _, err := tasks.NewRefreshTask(loc, true, time.Now()); err == nil {
				t.Error("NewRefreshTask made a task")
			}
			if _, err := tasks.NewPatientsSyncTask(loc); err == nil {
				t.Error("NewPatientsSyncTask made a task")
			}
			if _, err := tasks.NewAppointmentsSyncTask(loc); err == nil {
				t.Error("NewAppointmentsSyncTask made a task")
			}
		})
	}
	// A real GHL id still goes through.
	if _, err := tasks.NewRefreshTask("ve9EPM428h8vShlRW1KT", true, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// jsonString is s as a JSON string, escapes and all, invalid UTF-8 kept
// as the raw byte so that the payload carries exactly s.
func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte("0123456789abcdef"[c>>4])
			b.WriteByte("0123456789abcdef"[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// recordingRenewer keeps the requests it is asked for.
type recordingRenewer struct{ reqs []refresh.Request }

func (r *recordingRenewer) Refresh(ctx context.Context, req refresh.Request) (refresh.Result, error) {
	r.reqs = append(r.reqs, req)
	return refresh.Result{LocationID: req.LocationID, Outcome: refresh.Fresh}, nil
}

// A refresh task that says its token is due (a refresh-due fan-out's
// child) asks the refresher to skip the read before the lock; a refresh
// asked for on demand does not say so.
func TestRefreshTaskPassesDue(t *testing.T) {
	t.Parallel()
	r := &recordingRenewer{}
	h := &tasks.TokenHandlers{Refresher: r}
	onDemand, err := tasks.NewRefreshTask("locA", false, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range []*asynq.Task{
		onDemand,
		asynq.NewTask(tasks.TypeTokenRefresh, []byte(`{"location_id":"locB","requested_at":"2026-01-01T00:00:00Z","due":true}`)),
	} {
		if err := h.HandleRefresh(context.Background(), task); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.reqs) != 2 || r.reqs[0].Due || !r.reqs[1].Due {
		t.Errorf("requests %+v: want locA not due, locB due", r.reqs)
	}
}
