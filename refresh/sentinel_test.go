package refresh_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/refresh"
	"github.com/ghlsync/ghlsync/store/storetest"
)

// Sentinel fails the master over while a refresh is in flight: GHL has
// rotated the token and not yet answered. The answer is stored all the
// same (the database holds GHL's current refresh token), the worker goes on
// on the promoted replica, with the master's password and database, and
// the next refresh spends that token without a reuse or a refusal.
func TestSentinelFailoverLosesNoToken(t *testing.T) {
	t.Parallel()
	const db = 5
	s := testenv.RedisSentinel(t, "master-pw-4d1", "sentinel-pw-9c2", db)
	r, b := setupOn(t, storetest.NewStackOn(t, ghltest.Options{}, func(testing.TB) string { return s.URL }), "loc1")
	ctx := context.Background()
	stop, err := r.Heartbeat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	rotated, failedOver := make(chan struct{}), make(chan struct{})
	var once sync.Once
	b.fake.SetOnTokenIssued(func(string) {
		once.Do(func() {
			close(rotated)
			<-failedOver
		})
	})
	type outcome struct {
		res refresh.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := r.Refresh(ctx, refresh.Request{LocationID: "loc1", RequestedAt: time.Now(), Force: true})
		done <- outcome{res, err}
	}()
	select {
	case <-rotated:
	case o := <-done:
		t.Fatalf("the refresh ended before GHL rotated the token: %+v, %v", o.res, o.err)
	case <-time.After(20 * time.Second):
		t.Fatal("the refresh never reached GHL")
	}
	s.Failover(t)
	close(failedOver)
	o := <-done
	if o.err != nil || o.res.Outcome != refresh.Refreshed {
		t.Fatalf("the refresh in flight across the failover: %+v, %v; want refreshed", o.res, o.err)
	}
	b.requireStoredCurrent(t, "loc1")

	res, err := r.Refresh(ctx, refresh.Request{LocationID: "loc1", RequestedAt: time.Now(), Force: true})
	if err != nil || res.Outcome != refresh.Refreshed {
		t.Fatalf("the refresh after the failover: %+v, %v; want refreshed", res, err)
	}
	b.requireStoredCurrent(t, "loc1")
	if reuses, refused := b.fake.SpentReuses("loc1"), b.fake.InvalidGrants("loc1"); reuses != 0 || refused != 0 {
		t.Fatalf("spent token reuses %d, invalid grants %d; want none", reuses, refused)
	}

	// The worker's heartbeat lives on the new master, in the URL's
	// database, reached with the master's password.
	promoted := redis.NewClient(&redis.Options{Addr: s.MasterAddr(t), Password: "master-pw-4d1", DB: db})
	defer promoted.Close()
	if s.MasterAddr(t) != s.Nodes[1].Addr {
		t.Fatalf("the master is %s, want the promoted replica %s", s.MasterAddr(t), s.Nodes[1].Addr)
	}
	keys, err := promoted.Keys(ctx, "ghlsync:refresh:worker:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("heartbeat keys on the new master's database %d: %v, %v; want the worker's", db, keys, err)
	}
	if strings.Contains(b.logs.String(), "master-pw-4d1") {
		t.Fatal("the log holds the Redis password")
	}
}
