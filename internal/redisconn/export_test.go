package redisconn

import "github.com/redis/go-redis/v9"

// FailoverOptionsForTest exposes what a redis-sentinel:// URL parsed to:
// a failover client shows only its master's side.
func FailoverOptionsForTest(o *Options) redis.FailoverOptions { return *o.failover }
