package testenv

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// The cluster serves keys of every slot through one client, and keys of
// different slots are on different nodes.
func TestRedisCluster(t *testing.T) {
	t.Parallel()
	fresh := SharedRedisCluster(t)
	u := fresh(t)
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(strings.TrimPrefix(u, "redis-cluster://"), ",")})
	defer rc.Close()
	ctx := context.Background()
	nodes := map[string]bool{}
	for i := range 30 {
		k := fmt.Sprintf("k%d", i)
		if err := rc.Set(ctx, k, i, 0).Err(); err != nil {
			t.Fatal(err)
		}
		n, err := rc.MasterForKey(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		nodes[n.String()] = true
	}
	if len(nodes) != 3 {
		t.Fatalf("30 keys on %d nodes, want 3", len(nodes))
	}
	fresh(t)
	if n, err := rc.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("after the factory's next call %d keys remain (%v), want the cluster empty", n, err)
	}
}

// A failover promotes the replica, with what the master held.
func TestRedisSentinelFailover(t *testing.T) {
	t.Parallel()
	s := RedisSentinel(t, "master-pw", "sentinel-pw", 0)
	before := s.MasterAddr(t)
	if before != s.Nodes[0].Addr {
		t.Fatalf("master %s, want %s", before, s.Nodes[0].Addr)
	}
	s.Failover(t)
	if after := s.MasterAddr(t); after != s.Nodes[1].Addr {
		t.Fatalf("master after failover %s, want the replica %s", after, s.Nodes[1].Addr)
	}
}
