package refresh_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/refresh"
)

// BenchmarkRefresher refreshes 2,000 due locations with 10 goroutines
// calling the Refresher directly (no queue) against the fake GHL answering
// after 20 ms: of-ideal compares it with 2000 × 20 ms / 10. Beside
// BenchmarkRefreshDue in app it shows what the queue costs.
//
//	go test -run '^$' -bench Refresher -benchtime 1x ./refresh/
func BenchmarkRefresher(b *testing.B) {
	const (
		locations   = 2000
		latency     = 20 * time.Millisecond
		concurrency = 10
	)
	for range b.N {
		b.StopTimer()
		r, bd := setup(b)
		bd.fake.InjectFault(ghltest.Fault{Path: "/oauth/token", Latency: latency})
		for i := range locations {
			bd.Connect(b, fmt.Sprintf("loc%04d", i), time.Now().Add(time.Hour))
		}
		locs := make(chan string, locations)
		for i := range locations {
			locs <- fmt.Sprintf("loc%04d", i)
		}
		close(locs)
		b.StartTimer()
		start := time.Now()
		var wg sync.WaitGroup
		for range concurrency {
			wg.Go(func() {
				for loc := range locs {
					if _, err := r.Refresh(context.Background(), refresh.Request{LocationID: loc, RequestedAt: start}); err != nil {
						b.Error(err)
					}
				}
			})
		}
		wg.Wait()
		wall := time.Since(start)
		b.StopTimer()
		ideal := time.Duration(locations) * latency / concurrency
		b.ReportMetric(ideal.Seconds()/wall.Seconds(), "of-ideal")
		b.ReportMetric(float64(locations)/wall.Seconds(), "refreshes/s")
	}
}
