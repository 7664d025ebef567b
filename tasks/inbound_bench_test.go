package tasks_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/tasks"
)

// BenchmarkWebhookIntake posts 5,000 signed contact webhooks, 32 at a
// time, to the web handler, which records each in the database and
// enqueues its processing before it answers (no worker runs): requests
// per second and the answer's p50 and p99.
func BenchmarkWebhookIntake(b *testing.B) {
	e := setupInbound(b, "loc1")
	e.srv.Shutdown() // intake alone
	const n, clients = 5000, 32
	for round := range b.N {
		bodies := make([][]byte, n)
		now := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
		for i := range bodies {
			bodies[i], _ = json.Marshal(map[string]any{"type": "ContactUpdate", "locationId": "loc1",
				"id": fmt.Sprintf("contact%013d", i), "firstName": fmt.Sprintf("F%d", i),
				"webhookId": fmt.Sprintf("bench-%d-%d", round, i), "timestamp": now})
		}
		lat := make([]time.Duration, n)
		work := make(chan int)
		var wg sync.WaitGroup
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
		start := time.Now()
		for range clients {
			wg.Go(func() {
				for i := range work {
					req, _ := http.NewRequest(http.MethodPost, e.web.URL+"/api/webhooks/ghl", bytes.NewReader(bodies[i]))
					req.Header.Set("x-ghl-signature", base64.StdEncoding.EncodeToString(ed25519.Sign(e.key, bodies[i])))
					t0 := time.Now()
					resp, err := client.Do(req)
					lat[i] = time.Since(t0)
					if err != nil || resp.StatusCode != http.StatusOK {
						b.Errorf("post %d: %v %v", i, err, resp)
						return
					}
					resp.Body.Close()
				}
			})
		}
		for i := range n {
			work <- i
		}
		close(work)
		wg.Wait()
		elapsed := time.Since(start)
		slices.Sort(lat)
		p50, p99 := lat[n/2], lat[n*99/100]
		b.ReportMetric(float64(n)/elapsed.Seconds(), "webhooks/s")
		b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
		b.Logf("%d webhooks, %d clients, %s on %s: %.0f/s, p50 %s, p99 %s (p99/p50 %.1fx)", n, clients, elapsed.Round(time.Millisecond),
			dbKind(e.DatabaseURL), float64(n)/elapsed.Seconds(), p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond),
			float64(p99)/float64(p50))
	}
}

func dbKind(url string) string {
	if len(url) > 8 && url[:8] == "postgres" {
		return "PostgreSQL"
	}
	return "SQLite"
}

// BenchmarkReconcile10k reconciles a location of 10,000 synced contacts
// at GHL's own pace (100 calls per 10 s), twice: the first takes GHL's
// values as the baseline of contacts synced before fields were kept, the
// second is a nightly run's steady state. It prints GHL calls against the
// fewest that can read the location (a page of 500, the field list) and
// the time against the rate limit's lower bound for those calls.
func BenchmarkReconcile10k(b *testing.B) {
	const n = 10000
	for range b.N {
		b.StopTimer()
		e := setupInbound(b, "loc1")
		e.Fake.SetWebhooks(ghltest.WebhookOptions{})
		e.seed(b, "loc1", 1, 0)
		e.syncLocation(b, tasks.NewPatientsSyncTask, "loc1")
		field := e.patientField(b, "loc1")
		ps := make([]store.Patient, 0, n)
		rows := make([]map[string]any, 0, n)
		for i := 1; i < n; i++ {
			p := patient("loc1", i)
			ps = append(ps, p)
			c := e.Fake.AddContact(ghltest.Contact{LocationID: "loc1", FirstName: p.FirstName, LastName: p.LastName,
				Email: p.Email, City: p.City, CustomFields: []ghltest.CustomField{{ID: field, Value: p.ExternalID}}})
			rows = append(rows, map[string]any{"location_id": "loc1", "external_id": p.ExternalID, "contact_id": c.ID,
				"sent_hash": "x", "updated_at": time.Now().UTC()})
		}
		if err := e.Store.InsertPatients(context.Background(), ps); err != nil {
			b.Fatal(err)
		}
		if err := storetest.DB(b, e.DatabaseURL).Table("sync_patients").CreateInBatches(rows, 500).Error; err != nil {
			b.Fatal(err)
		}
		minCalls := 1 + (n+499)/500 // the custom field list and the pages of 500
		for _, run := range []string{"first (baseline)", "nightly"} {
			b.StartTimer()
			start := time.Now()
			res := e.reconcile(b, "loc1")
			elapsed := time.Since(start)
			b.StopTimer()
			calls := res.Calls
			bound := time.Duration(max(0, calls-100)) * 100 * time.Millisecond
			if res.Contacts != n || res.MissingCount != 0 || res.Changes != 0 || len(res.Duplicates) != 0 {
				b.Fatalf("%s reconciliation: %+v", run, res)
			}
			b.Logf("%s reconciliation of %d contacts: %d GHL calls (fewest possible %d: %.2fx), %s; the rate limit's lower bound for %d calls is %s (within one 10 s window of 100)",
				run, n, calls, minCalls, float64(calls)/float64(minCalls), elapsed.Round(time.Millisecond), calls, bound)
		}
	}
}
