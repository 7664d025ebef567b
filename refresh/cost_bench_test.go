package refresh_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/refresh"
	"github.com/ghlsync/ghlsync/store"
)

// BenchmarkRefreshCost refreshes 1,000 due locations, 20 at a time, as a
// worker's token slots run the refresh-due fan-out's children (History
// set, as the worker wires it), and reports what one refresh costs: Redis
// commands and round trips, SQL statements (store.CountStatements), and
// this process's CPU time. The fake GHL answers at once: the figures are
// per refresh, not wall time, so they hold on a busy machine.
//
//	go test -run '^$' -bench RefreshCost -benchtime 1x ./refresh/
func BenchmarkRefreshCost(b *testing.B) {
	const (
		locations   = 1000
		concurrency = 20
	)
	for range b.N {
		b.StopTimer()
		r, bd := setup(b)
		for i := range locations {
			bd.Connect(b, fmt.Sprintf("loc%04d", i), time.Now().Add(time.Hour))
		}
		var sql atomic.Int64
		st, err := store.Open(context.Background(), bd.DatabaseURL, testenv.Cipher(b, bd.Key), store.CountStatements(&sql))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		r.Store, r.History = st, st
		r.Log = slog.New(slog.DiscardHandler)
		counted := &roundTripCounter{}
		r.Redis.AddHook(counted)
		locs := make(chan string, locations)
		for i := range locations {
			locs <- fmt.Sprintf("loc%04d", i)
		}
		close(locs)
		start, err := refresh.SharedTime(context.Background(), r.Redis)
		if err != nil {
			b.Fatal(err)
		}
		sql.Store(0)
		counted.cmds.Store(0)
		counted.trips.Store(0)
		cpu0 := cpuTime()
		b.StartTimer()
		var wg sync.WaitGroup
		for range concurrency {
			wg.Go(func() {
				for loc := range locs {
					res, err := r.Refresh(context.Background(), refresh.Request{LocationID: loc, RequestedAt: start, Due: true})
					if err != nil || res.Outcome != refresh.Refreshed {
						b.Errorf("Refresh %s = %+v, %v; want refreshed", loc, res, err)
					}
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		cpu := cpuTime() - cpu0
		b.ReportMetric(float64(counted.cmds.Load())/locations, "redis-cmds/refresh")
		b.ReportMetric(float64(counted.trips.Load())/locations, "redis-trips/refresh")
		b.ReportMetric(float64(sql.Load())/locations, "sql/refresh")
		b.ReportMetric(float64(cpu.Microseconds())/1000/locations, "go-cpu-ms/refresh")
	}
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// roundTripCounter counts Redis commands, and round trips (a pipeline or
// transaction is one).
type roundTripCounter struct{ cmds, trips atomic.Int64 }

func (c *roundTripCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *roundTripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.cmds.Add(1)
		c.trips.Add(1)
		return next(ctx, cmd)
	}
}
func (c *roundTripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.cmds.Add(int64(len(cmds)))
		c.trips.Add(1)
		return next(ctx, cmds)
	}
}
