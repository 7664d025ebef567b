package redisconn_test

import (
	"context"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/internal/redisconn"
	"github.com/ghlsync/ghlsync/internal/testenv"
)

// Through a redis-sentinel:// URL both ghlsync's client and asynq's queue
// reach the master with its password and on the URL's database, and the
// sentinel with its own password. asynq's own parser of the same URL
// reaches the master without a password: the gap this package closes.
func TestSentinelURLReachesTheMastersDatabase(t *testing.T) {
	t.Parallel()
	const db = 3
	s := testenv.RedisSentinel(t, "master-pw-71", "sentinel-pw-72", db)
	ctx := context.Background()
	opt, err := redisconn.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	rc := opt.NewClient()
	defer rc.Close()
	if err := rc.Set(ctx, "ghlsync:probe", "1", 0).Err(); err != nil {
		t.Fatalf("writing through the sentinel URL: %v", err)
	}
	client := asynq.NewClient(opt)
	defer client.Close()
	if _, err := client.Enqueue(asynq.NewTask("probe", nil)); err != nil {
		t.Fatalf("enqueueing through the sentinel URL: %v", err)
	}

	master := redis.NewClient(&redis.Options{Addr: s.Nodes[0].Addr, Password: "master-pw-71", DB: db})
	defer master.Close()
	for _, key := range []string{"ghlsync:probe", "asynq:{default}:pending"} {
		if n, err := master.Exists(ctx, key).Result(); err != nil || n != 1 {
			t.Errorf("%s on the master's database %d: %d, %v; want it there", key, db, n, err)
		}
	}

	theirs, err := asynq.ParseRedisURI(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	arc := theirs.MakeRedisClient().(redis.UniversalClient)
	defer arc.Close()
	if err := arc.Ping(ctx).Err(); err == nil {
		t.Error("asynq's parser reached the master: the gap is gone, and this package's Sentinel parsing may be too")
	}
}
