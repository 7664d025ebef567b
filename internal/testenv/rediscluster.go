package testenv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Real Redis servers of a test's own: a three-master Redis Cluster
// (RedisCluster) and a master with a replica under a sentinel
// (RedisSentinel), started from the redis-server and redis-cli on PATH in
// the test's temporary directory, on loopback ports of TEST_REDIS_PORTS
// (a range such as 18000-18099, its default), and killed at cleanup. A
// test that needs them is skipped, saying why, where redis-server or
// redis-cli is missing, and under -short: starting them takes seconds.

// portsVar names the ports the servers may listen on.
const portsVar = "TEST_REDIS_PORTS"

// redisPortRange parses TEST_REDIS_PORTS.
func redisPortRange() (lo, hi int, err error) {
	s := os.Getenv(portsVar)
	if s == "" {
		s = "18000-18099"
	}
	a, b, _ := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := strconv.Atoi(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || lo <= 0 || hi > 65535 || hi < lo {
		return 0, 0, fmt.Errorf("%s=%q is not a port range such as 18000-18099", portsVar, s)
	}
	return lo, hi, nil
}

// claimPorts reserves n ports of TEST_REDIS_PORTS for t: each is free to
// listen on, and held by a file lock that other test processes (of any
// package, running at the same time) respect, until cleanup or the
// process's death.
// While the range has too few, it waits for up to a minute.
func claimPorts(t testing.TB, n int) []int {
	t.Helper()
	lo, hi, err := redisPortRange()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	var ports []int
	deadline := time.Now().Add(time.Minute)
	for {
		ports = append(ports, tryPorts(t, lo, hi, n-len(ports))...)
		if len(ports) == n {
			return ports
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: fewer than %d free ports in %s (%d-%d) for a minute", n, portsVar, lo, hi)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// tryPorts claims up to n ports of lo-hi, as claimPorts does.
func tryPorts(t testing.TB, lo, hi, n int) []int {
	var ports []int
	for _, p := range rand.Perm(hi - lo + 1) {
		port := lo + p
		if port == 6379 {
			continue // never the shared Redis's
		}
		f, err := os.OpenFile(filepath.Join(os.TempDir(), fmt.Sprintf("ghlsync-test-port-%d.lock", port)), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			t.Fatalf("testenv: port lock: %v", err)
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			f.Close()
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			f.Close() // someone outside the tests uses it
			continue
		}
		ln.Close()
		t.Cleanup(func() { f.Close() })
		if ports = append(ports, port); len(ports) == n {
			break
		}
	}
	return ports
}

// redisBinaries returns the paths of redis-server and redis-cli, skipping
// t when either is missing.
func redisBinaries(t testing.TB) (server, cli string) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real Redis servers (seconds): skipped under -short")
	}
	server, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not on PATH: this test needs a real Redis (a cluster or sentinels); install Redis to run it")
	}
	cli, err = exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("redis-cli is not on PATH: this test needs it to set up Redis; install Redis to run it")
	}
	return server, cli
}

// RedisNode is a redis-server started by a test.
type RedisNode struct {
	Addr   string
	Output *Buffer
	cmd    *exec.Cmd
	exited chan struct{}
}

// Kill kills the server (SIGKILL) and waits for it to end.
func (n *RedisNode) Kill() {
	n.cmd.Process.Kill()
	<-n.exited
}

// startRedisNode runs redis-server with a config file of lines in dir, and
// waits until it answers PING with password (or without, when "").
// A sentinel is started in sentinel mode.
func startRedisNode(t testing.TB, bin, dir string, port int, password string, sentinel bool, lines ...string) *RedisNode {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := append([]string{
		"port " + strconv.Itoa(port), "bind 127.0.0.1", "dir " + dir,
		`save ""`, "appendonly no", "daemonize no", "protected-mode no",
	}, lines...)
	path := filepath.Join(dir, "redis.conf")
	if err := os.WriteFile(path, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := &RedisNode{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Output: &Buffer{}, exited: make(chan struct{})}
	args := []string{path}
	if sentinel {
		args = append(args, "--sentinel")
	}
	n.cmd = exec.Command(bin, args...)
	n.cmd.Stdout, n.cmd.Stderr = n.Output, n.Output
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		n.cmd.Wait()
		close(n.exited)
	}()
	t.Cleanup(func() {
		n.Kill()
		if t.Failed() {
			t.Logf("redis-server %s in %s:\n%s", n.Addr, dir, n.Output)
		}
	})
	rc := redis.NewClient(&redis.Options{Addr: n.Addr, Password: password, MaxRetries: -1})
	defer rc.Close()
	Eventually(t, 20*time.Second, "redis-server on "+n.Addr+" to answer PING", func() bool {
		select {
		case <-n.exited:
			t.Fatalf("redis-server on %s exited: %s", n.Addr, n.Output)
		default:
		}
		return rc.Ping(context.Background()).Err() == nil
	})
	return n
}

// RedisCluster starts a Redis Cluster of three masters (no replicas) and
// returns its redis-cluster:// URL once every node reports cluster_state:ok
// and agrees on who serves each slot.
func RedisCluster(t testing.TB) string {
	t.Helper()
	server, cli := redisBinaries(t)
	ports := claimPorts(t, 6) // a client port and a cluster bus port per node
	dir := t.TempDir()
	var addrs []string
	for i := range 3 {
		n := startRedisNode(t, server, filepath.Join(dir, fmt.Sprintf("node%d", i)), ports[2*i], "", false,
			"cluster-enabled yes", "cluster-config-file nodes.conf", "cluster-port "+strconv.Itoa(ports[2*i+1]),
			"cluster-node-timeout 5000")
		addrs = append(addrs, n.Addr)
	}
	out, err := exec.Command(cli, append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("testenv: redis-cli --cluster create %v: %v\n%s", addrs, err, out)
	}
	ctx := context.Background()
	Eventually(t, 30*time.Second, "every node of the cluster to say cluster_state:ok and serve all slots", func() bool {
		for _, a := range addrs {
			rc := redis.NewClient(&redis.Options{Addr: a})
			info, err := rc.ClusterInfo(ctx).Result()
			slots, serr := rc.ClusterSlots(ctx).Result()
			rc.Close()
			if err != nil || serr != nil || !strings.Contains(info, "cluster_state:ok") || len(slots) != 3 {
				return false
			}
		}
		return true
	})
	return "redis-cluster://" + strings.Join(addrs, ",")
}

// SharedRedisCluster starts one Redis Cluster (RedisCluster) for t and
// returns a factory of it for subtests run one after another: each call
// deletes the keys written since the cluster started (the keys it held
// then are kept, as RedisURL keeps a database's baseline) and returns its
// URL, so each subtest finds it as fresh as a cluster of its own, without
// the seconds a new one takes. Subtests given it must not run in parallel.
func SharedRedisCluster(t testing.TB) func(testing.TB) string {
	t.Helper()
	u := RedisCluster(t)
	opt, err := redis.ParseClusterURL("redis://" + strings.Split(strings.TrimPrefix(u, "redis-cluster://"), ",")[0])
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClusterClient(opt)
	t.Cleanup(func() { rc.Close() })
	baseline, err := clusterKeys(rc)
	if err != nil {
		t.Fatalf("testenv: listing the test's Redis Cluster keys: %v", err)
	}
	return func(sub testing.TB) string {
		sub.Helper()
		err := rc.ForEachMaster(context.Background(), func(ctx context.Context, m *redis.Client) error {
			iter := m.Scan(ctx, 0, "*", 1000).Iterator()
			for iter.Next(ctx) {
				if k := iter.Val(); !baseline[k] {
					if err := m.Del(ctx, k).Err(); err != nil {
						return err
					}
				}
			}
			return iter.Err()
		})
		if err != nil {
			sub.Fatalf("testenv: emptying the test's Redis Cluster: %v", err)
		}
		return u
	}
}

// clusterKeys lists the keys every master of rc holds.
func clusterKeys(rc *redis.ClusterClient) (map[string]bool, error) {
	var mu sync.Mutex
	keys := map[string]bool{}
	err := rc.ForEachMaster(context.Background(), func(ctx context.Context, m *redis.Client) error {
		iter := m.Scan(ctx, 0, "*", 1000).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			keys[iter.Val()] = true
			mu.Unlock()
		}
		return iter.Err()
	})
	return keys, err
}

// Sentinel is a master, its replica and one sentinel watching them, as
// RedisSentinel started them.
type Sentinel struct {
	// URL is the redis-sentinel:// URL: the master's password and
	// database, the sentinel's password as sentinel_password.
	URL string
	// Master is the name the sentinel knows the master by.
	Master string
	// Nodes are the master and the replica, as started.
	Nodes    [2]*RedisNode
	sentinel *redis.SentinelClient
	password string
}

// RedisSentinel starts a master with password and one replica of it, and a
// sentinel (password sentinelPassword) that watches them, and returns them
// once the sentinel knows the replica, so that a failover can promote it.
// The URL names database db.
func RedisSentinel(t testing.TB, password, sentinelPassword string, db int) *Sentinel {
	t.Helper()
	server, _ := redisBinaries(t)
	ports := claimPorts(t, 3)
	dir := t.TempDir()
	auth := []string{"requirepass " + password, "masterauth " + password}
	master := startRedisNode(t, server, filepath.Join(dir, "master"), ports[0], password, false, auth...)
	replica := startRedisNode(t, server, filepath.Join(dir, "replica"), ports[1], password, false,
		append(auth, "replicaof 127.0.0.1 "+strconv.Itoa(ports[0]))...)
	const name = "ghlsync"
	sent := startRedisNode(t, server, filepath.Join(dir, "sentinel"), ports[2], sentinelPassword, true,
		"requirepass "+sentinelPassword,
		"sentinel monitor "+name+" 127.0.0.1 "+strconv.Itoa(ports[0])+" 1",
		"sentinel auth-pass "+name+" "+password,
		"sentinel down-after-milliseconds "+name+" 2000",
		"sentinel failover-timeout "+name+" 10000")
	sc := redis.NewSentinelClient(&redis.Options{Addr: sent.Addr, Password: sentinelPassword})
	t.Cleanup(func() { sc.Close() })
	s := &Sentinel{
		URL: fmt.Sprintf("redis-sentinel://:%s@%s/%d?master=%s&sentinel_password=%s",
			password, sent.Addr, db, name, sentinelPassword),
		Master: name, Nodes: [2]*RedisNode{master, replica}, sentinel: sc, password: password,
	}
	Eventually(t, 30*time.Second, "the sentinel to know the replica, in sync", func() bool {
		reps, err := sc.Replicas(context.Background(), name).Result()
		return err == nil && len(reps) == 1 && reps[0]["master-link-status"] == "ok" && !strings.Contains(reps[0]["flags"], "down")
	})
	return s
}

// MasterAddr is the address the sentinel names as the master now.
func (s *Sentinel) MasterAddr(t testing.TB) string {
	t.Helper()
	hp, err := s.sentinel.GetMasterAddrByName(context.Background(), s.Master).Result()
	if err != nil {
		t.Fatalf("testenv: sentinel: master address: %v", err)
	}
	return net.JoinHostPort(hp[0], hp[1])
}

// Failover has the sentinel promote the replica, and returns once the
// sentinel names it as the master and it takes writes.
func (s *Sentinel) Failover(t testing.TB) {
	t.Helper()
	old := s.MasterAddr(t)
	if err := s.sentinel.Failover(context.Background(), s.Master).Err(); err != nil {
		t.Fatalf("testenv: SENTINEL FAILOVER: %v", err)
	}
	Eventually(t, 30*time.Second, "the sentinel to name a new master that takes writes", func() bool {
		addr := s.MasterAddr(t)
		if addr == old {
			return false
		}
		rc := redis.NewClient(&redis.Options{Addr: addr, Password: s.password})
		defer rc.Close()
		role, err := rc.Do(context.Background(), "ROLE").Slice()
		return err == nil && len(role) > 0 && role[0] == "master"
	})
}

// RedisServer starts a standalone redis-server of t's own on a port of
// TEST_REDIS_PORTS and returns its redis:// URL: a benchmark that reads
// INFO memory needs a server that holds nothing but its own keys. It is
// skipped as RedisCluster is where redis-server is missing.
func RedisServer(t testing.TB) string {
	t.Helper()
	server, _ := redisBinaries(t)
	port := claimPorts(t, 1)[0]
	n := startRedisNode(t, server, filepath.Join(t.TempDir(), "redis"), port, "", false)
	return "redis://" + n.Addr + "/0"
}
