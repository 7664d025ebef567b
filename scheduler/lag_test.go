package scheduler_test

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/scheduler"
	"github.com/ghlsync/ghlsync/store"
)

// TestSchedulingLag measures the lag from a slot's due time to its enqueue,
// over 1,000 slots with three replicas. It takes real time, so it runs only
// when asked:
//
//	GHLSYNC_MEASURE_LAG=1 go test -run TestSchedulingLag -v ./scheduler/
//
// 1,000 slots come from GHLSYNC_LAG_SCHEDULES schedules (default 50) of
// 1 s each, all due at the same second: the worst case for contention,
// since every replica reaches for every slot at once.
func TestSchedulingLag(t *testing.T) {
	if os.Getenv("GHLSYNC_MEASURE_LAG") == "" {
		t.Skip("set GHLSYNC_MEASURE_LAG=1 to measure scheduling lag")
	}
	const slots = 1000
	n := 50
	if s := os.Getenv("GHLSYNC_LAG_SCHEDULES"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			t.Fatalf("GHLSYNC_LAG_SCHEDULES=%q", s)
		}
	}
	b := setup(t)
	// The first slot is a whole second ahead, so that no slot is late
	// merely because the schedules were created before the replicas ran.
	first := time.Now().Truncate(time.Second).Add(2 * time.Second)
	for i := range n {
		b.create(t, store.Schedule{Name: fmt.Sprintf("lag-%03d", i), EverySeconds: 1, NextRunAt: &first})
	}
	var stops []func()
	for range 3 {
		stops = append(stops, start(t, b.replica(t, scheduler.Options{})))
	}
	testenv.Eventually(t, time.Duration(slots/n+30)*time.Second, "1000 slots", func() bool { return b.log.len() >= slots })
	for _, stop := range stops {
		stop()
	}

	entries := b.log.all()
	bySchedule := map[string][]enqueued{}
	var lags []time.Duration
	for _, e := range entries {
		name := e.id[len("sched:") : len(e.id)-len(":")-len(strconv.FormatInt(e.slot.Unix(), 10))]
		bySchedule[name] = append(bySchedule[name], e)
		lags = append(lags, e.at.Sub(e.slot))
	}
	for _, es := range bySchedule {
		requireEverySlotOnce(t, es, time.Second)
	}
	slices.Sort(lags)
	q := func(p float64) time.Duration { return lags[int(p*float64(len(lags)-1))].Round(100 * time.Microsecond) }
	db := "SQLite"
	if b.st.Postgres() {
		db = "PostgreSQL"
	}
	redis := "miniredis"
	if os.Getenv("TEST_REDIS_URL") != "" {
		redis = "Redis"
	}
	t.Logf("scheduling lag, %d slots of %d 1s-schedules, 3 replicas, %s + %s: p50 %s  p90 %s  p99 %s  max %s",
		len(lags), n, db, redis, q(.50), q(.90), q(.99), lags[len(lags)-1].Round(100*time.Microsecond))
	if p99 := q(.99); p99 > time.Second {
		t.Errorf("p99 lag %s, want under 1 s", p99)
	}
}
