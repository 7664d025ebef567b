// Package redisconn turns a REDIS_URL into the Redis clients of a ghlsync
// process: a go-redis client for ghlsync's own keys, and the same
// connection settings as asynq's RedisConnOpt for the queue. One parser
// serves both, so the queue and the locks always reach the same Redis with
// the same credentials, database and TLS.
//
// The forms:
//
//	redis://[[USER]:PASSWORD@]HOST[:6379][/DB][?OPTIONS]
//	rediss://…                                   the same over TLS
//	redis-sentinel://[[USER]:PASSWORD@]HOST1[:26379][,HOST2[:26379]…][/DB]?master=NAME
//	        [&sentinel_username=U][&sentinel_password=P][&tls=true]
//	redis-cluster://[[USER]:PASSWORD@]HOST1[:6379][,HOST2[:6379]…][?tls=true]
//
// USER is a Redis 6 ACL user; leave it out (":PASSWORD@") for a plain
// requirepass. For Sentinel, USER and PASSWORD and DB are the master's (and
// its replicas'), the data ghlsync reads and writes; the sentinels are
// asked with sentinel_username and sentinel_password, and without a
// password when those are absent. tls=true speaks TLS to every node (and
// to the sentinels), each verified against its own host name. A cluster
// has database 0 only. OPTIONS of redis:// and rediss:// are go-redis's
// (dial_timeout=, pool_size=, skip_verify=, …).
package redisconn

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Kind is how a REDIS_URL reaches Redis.
type Kind string

// The kinds of REDIS_URL.
const (
	Single   Kind = "single"   // redis://, rediss://
	Sentinel Kind = "sentinel" // redis-sentinel://
	Cluster  Kind = "cluster"  // redis-cluster://
)

// Schemes are the URL schemes Parse accepts.
var Schemes = []string{"redis", "rediss", "redis-sentinel", "redis-cluster"}

// Options are a parsed REDIS_URL. They are an asynq.RedisConnOpt: asynq
// makes its own clients from them (and closes them), alike to NewClient's.
type Options struct {
	kind     Kind
	single   *redis.Options
	failover *redis.FailoverOptions
	cluster  *redis.ClusterOptions
}

// BufferSize is each way's buffer of a connection, a pipeline's too unless
// the URL sizes those (pipeline_read_buffer_size=,
// pipeline_write_buffer_size=). A ghlsync process's commands and replies
// are small (a task, a lock, a counter, a page of a queue), and go-redis's
// own sizes, 32 KiB each way and 128 KiB for a pipeline's connections,
// held several megabytes of an idle worker's memory; a larger reply or
// pipeline is read or written in more than one piece.
const BufferSize = 8 << 10

// sizeBuffers gives a client's buffer sizes their defaults.
func sizeBuffers(read, write, pipelineRead, pipelineWrite *int) {
	*read, *write = BufferSize, BufferSize
	for _, b := range []*int{pipelineRead, pipelineWrite} {
		if *b == 0 {
			*b = BufferSize
		}
	}
}

// SizePool lets the client hold up to n connections at once (for a
// cluster, per node), unless the URL sizes its pool (pool_size= of
// redis:// and rediss://). go-redis's own size, ten per CPU, suits a
// process whose goroutines mostly compute; a worker's tasks mostly wait,
// each on at most one connection at a time, and with fewer connections
// than tasks they queue for one. The pool opens connections only as they
// are needed.
func (o *Options) SizePool(n int) {
	if size := o.poolSize(); *size == 0 {
		*size = n
	}
}

func (o *Options) poolSize() *int {
	switch o.kind {
	case Sentinel:
		return &o.failover.PoolSize
	case Cluster:
		return &o.cluster.PoolSize
	}
	return &o.single.PoolSize
}

// Kind says how the options reach Redis.
func (o *Options) Kind() Kind { return o.kind }

// NewClient returns a new client; the caller closes it.
func (o *Options) NewClient() redis.UniversalClient {
	switch o.kind {
	case Sentinel:
		f := *o.failover
		return redis.NewFailoverClient(&f)
	case Cluster:
		c := *o.cluster
		return redis.NewClusterClient(&c)
	}
	s := *o.single
	return redis.NewClient(&s)
}

// MakeRedisClient makes the options an asynq.RedisConnOpt.
func (o *Options) MakeRedisClient() any { return o.NewClient() }

// IsCluster reports whether rc talks to a Redis Cluster, where the keys of
// one command, script or MULTI must share a hash slot.
func IsCluster(rc redis.UniversalClient) bool {
	_, ok := rc.(*redis.ClusterClient)
	return ok
}

// Error is a REDIS_URL that cannot be used. Its message never holds the
// URL's credentials.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

func bad(format string, a ...any) error { return &Error{fmt.Sprintf(format, a...)} }

// Parse parses a REDIS_URL (see the package comment for the forms).
func Parse(raw string) (*Options, error) {
	scheme, after, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, bad("is not a URL such as redis://HOST:6379/0")
	}
	if !slices.Contains(Schemes, scheme) {
		return nil, bad("scheme %q is not one of %s", scheme, strings.Join(Schemes, ", "))
	}
	// The host list of Sentinel and Cluster is split off by hand: net/url
	// reads "h1:6379,h2" as a host with port "6379,h2" and refuses it.
	end := strings.IndexAny(after, "/?#")
	if end < 0 {
		end = len(after)
	}
	authority := after[:end]
	at := strings.LastIndex(authority, "@")
	hostList := authority[at+1:]
	if hostList == "" {
		return nil, bad("%s:// has no host", scheme)
	}
	u, err := url.Parse(scheme + "://" + authority[:at+1] + "host" + after[end:])
	if err != nil {
		// url.Parse's message quotes the URL, password and all.
		return nil, bad("%s:// is not a URL (a password with @, :, / or %% in it must be percent-encoded)", scheme)
	}
	user, pass, err := credentials(u)
	if err != nil {
		return nil, err
	}
	switch scheme {
	case "redis-sentinel":
		return parseSentinel(u, hostList, user, pass)
	case "redis-cluster":
		return parseCluster(u, hostList, user, pass)
	}
	if strings.Contains(hostList, ",") {
		return nil, bad("%s:// takes one host; several are redis-sentinel:// or redis-cluster://", scheme)
	}
	if _, err := hosts(scheme, hostList, "6379"); err != nil {
		return nil, err
	}
	o, err := redis.ParseURL(raw)
	if err != nil {
		// go-redis's messages name an option or a number, never the
		// credentials (url.Parse accepted the URL, see above).
		return nil, bad("%s://: %s", scheme, strings.TrimPrefix(err.Error(), "redis: "))
	}
	sizeBuffers(&o.ReadBufferSize, &o.WriteBufferSize, &o.PipelineReadBufferSize, &o.PipelineWriteBufferSize)
	return &Options{kind: Single, single: o}, nil
}

// credentials returns the URL's user and password. A user part without a
// password is refused: some clients read it as the password, go-redis as an
// ACL user name, and guessing wrong would either send a password as a user
// name or connect without one.
func credentials(u *url.URL) (user, pass string, err error) {
	if u.User == nil {
		return "", "", nil
	}
	p, ok := u.User.Password()
	if !ok && u.User.Username() != "" {
		return "", "", bad("has a user part but no password: write :PASSWORD@ for a password, USER:PASSWORD@ for an ACL user")
	}
	return u.User.Username(), p, nil
}

// hosts splits a comma separated host list, each host given defPort when
// it names none.
func hosts(scheme, list, defPort string) ([]string, error) {
	var out []string
	for h := range strings.SplitSeq(list, ",") {
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			if strings.Contains(strings.Trim(h, "[]"), ":") && !strings.HasPrefix(h, "[") {
				return nil, bad("%s://: %q is not HOST or HOST:PORT (an IPv6 address goes in brackets)", scheme, h)
			}
			host, port = strings.Trim(h, "[]"), defPort
		}
		if host == "" || strings.ContainsAny(host, "/ %") {
			return nil, bad("%s://: %q in the host list %q is not HOST or HOST:PORT", scheme, h, list)
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return nil, bad("%s://: host %q has port %q, not a number from 1 to 65535", scheme, h, port)
		}
		out = append(out, net.JoinHostPort(host, port))
	}
	return out, nil
}

// database parses the path's database number, 0 without one.
func database(u *url.URL) (int, error) {
	p := strings.Trim(u.Path, "/")
	if p == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 {
		return 0, bad("%s://: the path %q is not a database number", u.Scheme, u.Path)
	}
	return n, nil
}

// query checks that u's query holds only allowed parameters, each once.
func query(u *url.URL, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, bad("%s://: the query is malformed", u.Scheme)
	}
	for k, v := range q {
		if !slices.Contains(allowed, k) {
			return nil, bad("%s://: unknown parameter %q (known: %s)", u.Scheme, k, strings.Join(allowed, ", "))
		}
		if len(v) > 1 {
			return nil, bad("%s://: parameter %q given %d times", u.Scheme, k, len(v))
		}
	}
	return q, nil
}

// tlsConfig is the TLS of tls=true: each node verified against the host
// it is dialled at (crypto/tls takes the server name from the address when
// ServerName is empty, as it must be for a list of hosts).
func tlsConfig(u *url.URL, q url.Values) (*tls.Config, error) {
	switch v := q.Get("tls"); v {
	case "", "false", "0":
		return nil, nil
	case "true", "1":
		return &tls.Config{MinVersion: tls.VersionTLS12}, nil
	default:
		return nil, bad("%s://: tls=%q is not true or false", u.Scheme, v)
	}
}

func parseSentinel(u *url.URL, hostList, user, pass string) (*Options, error) {
	addrs, err := hosts(u.Scheme, hostList, "26379")
	if err != nil {
		return nil, err
	}
	q, err := query(u, "master", "sentinel_username", "sentinel_password", "tls")
	if err != nil {
		return nil, err
	}
	if q.Get("master") == "" {
		return nil, bad("redis-sentinel:// needs ?master=NAME, the master's name the sentinels monitor")
	}
	db, err := database(u)
	if err != nil {
		return nil, err
	}
	tc, err := tlsConfig(u, q)
	if err != nil {
		return nil, err
	}
	if q.Get("sentinel_username") != "" && q.Get("sentinel_password") == "" {
		return nil, bad("redis-sentinel://: sentinel_username needs a sentinel_password")
	}
	f := &redis.FailoverOptions{
		MasterName:       q.Get("master"),
		SentinelAddrs:    addrs,
		SentinelUsername: q.Get("sentinel_username"),
		SentinelPassword: q.Get("sentinel_password"),
		Username:         user,
		Password:         pass,
		DB:               db,
		// go-redis uses one TLSConfig for the sentinels and the master.
		TLSConfig: tc,
	}
	sizeBuffers(&f.ReadBufferSize, &f.WriteBufferSize, &f.PipelineReadBufferSize, &f.PipelineWriteBufferSize)
	return &Options{kind: Sentinel, failover: f}, nil
}

func parseCluster(u *url.URL, hostList, user, pass string) (*Options, error) {
	addrs, err := hosts(u.Scheme, hostList, "6379")
	if err != nil {
		return nil, err
	}
	q, err := query(u, "tls")
	if err != nil {
		return nil, err
	}
	if db, err := database(u); err != nil || db != 0 {
		return nil, bad("redis-cluster:// has database 0 only; leave the path out")
	}
	tc, err := tlsConfig(u, q)
	if err != nil {
		return nil, err
	}
	c := &redis.ClusterOptions{Addrs: addrs, Username: user, Password: pass, TLSConfig: tc}
	sizeBuffers(&c.ReadBufferSize, &c.WriteBufferSize, &c.PipelineReadBufferSize, &c.PipelineWriteBufferSize)
	return &Options{kind: Cluster, cluster: c}, nil
}
