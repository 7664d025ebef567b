package embedredis

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Keys expire as time passes, as on a real Redis: locks and OAuth states
// depend on it.
func TestKeysExpireInRealTime(t *testing.T) {
	t.Parallel()
	s, err := Start("")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	opt, err := redis.ParseURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(opt)
	defer rc.Close()
	ctx := context.Background()
	if err := rc.Set(ctx, "lock", "x", 200*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rc.Set(ctx, "kept", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for rc.Exists(ctx, "lock").Val() == 1 {
		if time.Now().After(deadline) {
			t.Fatal("a key with a 200 ms TTL still exists after 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if rc.Exists(ctx, "kept").Val() != 1 {
		t.Fatal("a key without TTL expired")
	}
}
