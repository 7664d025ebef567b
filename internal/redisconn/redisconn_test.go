package redisconn_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/internal/redisconn"
)

// The options are asynq's RedisConnOpt, and asynq's clients are the same
// kind as ghlsync's own.
var _ asynq.RedisConnOpt = (*redisconn.Options)(nil)

func TestParseSingle(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url              string
		addr, user, pass string
		db               int
		tls              bool
	}{
		{url: "redis://127.0.0.1:6379/0", addr: "127.0.0.1:6379"},
		{url: "redis://h", addr: "h:6379"},
		{url: "redis://:pw@h:7000/3", addr: "h:7000", pass: "pw", db: 3},
		// An ACL user is sent, where asynq's own parser dropped it.
		{url: "redis://app:pw@h/2", addr: "h:6379", user: "app", pass: "pw", db: 2},
		{url: "rediss://:p%40ss@h:6380/1?dial_timeout=3s", addr: "h:6380", pass: "p@ss", db: 1, tls: true},
	} {
		o, err := redisconn.Parse(tc.url)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.url, err)
			continue
		}
		c := o.NewClient()
		opt := c.(*redis.Client).Options()
		c.Close()
		if o.Kind() != redisconn.Single || opt.Addr != tc.addr || opt.Username != tc.user || opt.Password != tc.pass || opt.DB != tc.db || (opt.TLSConfig != nil) != tc.tls {
			t.Errorf("Parse(%q) = %s %s user %q password %q db %d tls %v; want %s user %q password %q db %d tls %v",
				tc.url, o.Kind(), opt.Addr, opt.Username, opt.Password, opt.DB, opt.TLSConfig != nil, tc.addr, tc.user, tc.pass, tc.db, tc.tls)
		}
	}
}

// The password, database and TLS of a redis-sentinel:// URL are the
// master's: asynq's parser gave the password to the sentinels only and
// reached the master without one, on database 0, in the clear.
func TestParseSentinel(t *testing.T) {
	t.Parallel()
	o, err := redisconn.Parse("redis-sentinel://app:master-pw@s1:26380,s2,[::1]:26381/4?master=mymaster&sentinel_password=sent-pw&tls=true")
	if err != nil {
		t.Fatal(err)
	}
	if o.Kind() != redisconn.Sentinel {
		t.Fatalf("kind %s, want sentinel", o.Kind())
	}
	f := redisconn.FailoverOptionsForTest(o)
	if diff := cmp.Diff([]string{"s1:26380", "s2:26379", "[::1]:26381"}, f.SentinelAddrs); diff != "" {
		t.Errorf("sentinels (-want +got):\n%s", diff)
	}
	if f.MasterName != "mymaster" || f.Username != "app" || f.Password != "master-pw" || f.DB != 4 {
		t.Errorf("master %q user %q password %q db %d; want mymaster, app, master-pw, 4", f.MasterName, f.Username, f.Password, f.DB)
	}
	if f.SentinelPassword != "sent-pw" || f.SentinelUsername != "" {
		t.Errorf("sentinel user %q password %q; want none and sent-pw", f.SentinelUsername, f.SentinelPassword)
	}
	if f.TLSConfig == nil || f.TLSConfig.ServerName != "" {
		t.Errorf("TLS %+v: want TLS with no fixed server name (each host verified as itself)", f.TLSConfig)
	}

	o, err = redisconn.Parse("redis-sentinel://:pw@s1?master=m")
	if err != nil {
		t.Fatal(err)
	}
	f = redisconn.FailoverOptionsForTest(o)
	if f.Password != "pw" || f.SentinelPassword != "" || f.DB != 0 || f.TLSConfig != nil {
		t.Errorf("password %q sentinel password %q db %d TLS %v; want the password the master's only, db 0, no TLS", f.Password, f.SentinelPassword, f.DB, f.TLSConfig)
	}
}

func TestParseCluster(t *testing.T) {
	t.Parallel()
	o, err := redisconn.Parse("redis-cluster://:pw@10.0.0.1:7000,10.0.0.2,redis-3:7002?tls=true")
	if err != nil {
		t.Fatal(err)
	}
	c := o.NewClient()
	defer c.Close()
	if !redisconn.IsCluster(c) || o.Kind() != redisconn.Cluster {
		t.Fatalf("client %T, kind %s: want a cluster client", c, o.Kind())
	}
	opt := c.(*redis.ClusterClient).Options()
	if diff := cmp.Diff([]string{"10.0.0.1:7000", "10.0.0.2:6379", "redis-3:7002"}, opt.Addrs); diff != "" {
		t.Errorf("addrs (-want +got):\n%s", diff)
	}
	if opt.Password != "pw" || opt.TLSConfig == nil {
		t.Errorf("password %q TLS %v; want pw and TLS", opt.Password, opt.TLSConfig)
	}
	if rc, ok := o.MakeRedisClient().(redis.UniversalClient); !ok || !redisconn.IsCluster(rc) {
		t.Errorf("MakeRedisClient = %T, want the cluster client asynq needs", rc)
	} else {
		rc.Close()
	}
	single := redis.NewClient(&redis.Options{Addr: "h:1"})
	defer single.Close()
	if redisconn.IsCluster(single) {
		t.Error("IsCluster of a single node client")
	}
}

// Every kind of client gets BufferSize buffers, its pipelines too unless
// the URL sizes those.
func TestParseSizesBuffers(t *testing.T) {
	t.Parallel()
	type sizes struct{ Read, Write, PipelineRead, PipelineWrite int }
	n := redisconn.BufferSize
	for _, tc := range []struct {
		url  string
		want sizes
	}{
		{"redis://h:6379/0", sizes{n, n, n, n}},
		{"redis://h:6379/0?pipeline_read_buffer_size=65536&pipeline_write_buffer_size=131072", sizes{n, n, 65536, 131072}},
		{"redis-sentinel://h1,h2/0?master=m", sizes{n, n, n, n}},
		{"redis-cluster://h1,h2", sizes{n, n, n, n}},
	} {
		o, err := redisconn.Parse(tc.url)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.url, err)
		}
		var got sizes
		switch o.Kind() {
		case redisconn.Single:
			c := o.NewClient().(*redis.Client)
			opt := c.Options()
			c.Close()
			got = sizes{opt.ReadBufferSize, opt.WriteBufferSize, opt.PipelineReadBufferSize, opt.PipelineWriteBufferSize}
		case redisconn.Sentinel:
			opt := redisconn.FailoverOptionsForTest(o)
			got = sizes{opt.ReadBufferSize, opt.WriteBufferSize, opt.PipelineReadBufferSize, opt.PipelineWriteBufferSize}
		case redisconn.Cluster:
			c := o.NewClient().(*redis.ClusterClient)
			opt := c.Options()
			c.Close()
			got = sizes{opt.ReadBufferSize, opt.WriteBufferSize, opt.PipelineReadBufferSize, opt.PipelineWriteBufferSize}
		}
		if got != tc.want {
			t.Errorf("Parse(%q) buffers %+v, want %+v", tc.url, got, tc.want)
		}
	}
}

// SizePool sizes the pool of every kind of client, and a URL's own
// pool_size wins.
func TestSizePool(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url  string
		want int
	}{
		{"redis://h:6379/0", 90},
		{"redis://h:6379/0?pool_size=7", 7},
		{"redis-sentinel://h1,h2/0?master=m", 90},
		{"redis-cluster://h1,h2", 90},
	} {
		o, err := redisconn.Parse(tc.url)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.url, err)
		}
		o.SizePool(90)
		var got int
		switch o.Kind() {
		case redisconn.Single:
			c := o.NewClient().(*redis.Client)
			got = c.Options().PoolSize
			c.Close()
		case redisconn.Sentinel:
			got = redisconn.FailoverOptionsForTest(o).PoolSize
		case redisconn.Cluster:
			c := o.NewClient().(*redis.ClusterClient)
			got = c.Options().PoolSize
			c.Close()
		}
		if got != tc.want {
			t.Errorf("Parse(%q) then SizePool(90): pool of %d, want %d", tc.url, got, tc.want)
		}
	}
}

// A bad URL is refused with a message that says what is wrong and never
// holds the password.
func TestParseErrors(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-pw"
	for _, tc := range []struct{ url, want string }{
		{"redis-cluster://:" + secret + "@h1:7000,h2:7001/2", "database 0 only"},
		{"redis-cluster://:" + secret + "@h1:7000,,h2", "is not HOST or HOST:PORT"},
		{"redis-cluster://:" + secret + "@h1:x", `port "x"`},
		{"redis-cluster://:" + secret + "@h1?master=m", `unknown parameter "master"`},
		{"redis-sentinel://:" + secret + "@s1,s2", "needs ?master=NAME"},
		{"redis-sentinel://:" + secret + "@s1?master=m&tls=maybe", `tls="maybe"`},
		{"redis-sentinel://:" + secret + "@s1/x?master=m", "not a database number"},
		{"redis://" + secret + "@h", "a user part but no password"},
		{"redis://:" + secret + "@h1,h2", "takes one host"},
		{"redis://:" + secret + "@h/0?nonsense=1", "nonsense"},
		{"redis://:" + secret + "@h:99999", "not a number from 1 to 65535"},
		{"redis://:" + secret + "@", "has no host"},
		{"memcache://:" + secret + "@h", `scheme "memcache" is not one of redis, rediss, redis-sentinel, redis-cluster`},
		{"redis://:" + secret + "%zz@h", "percent-encoded"},
		{secret, "is not a URL"},
	} {
		_, err := redisconn.Parse(tc.url)
		if err == nil {
			t.Errorf("Parse(%q) succeeded, want an error with %q", tc.url, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %q, want it to say %q", tc.url, err, tc.want)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Parse(%q) = %q: the error holds the password", tc.url, err)
		}
	}
}
