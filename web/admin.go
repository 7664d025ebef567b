package web

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net"
	"net/http"
	"net/netip"

	"github.com/hibiken/asynqmon"
	"github.com/redis/go-redis/v9"
)

// MonitoringPath is where asynqmon is served.
const MonitoringPath = "/monitoring"

// Admin returns middleware that lets only the operator through to the
// status page, its JSON and asynqmon. With a password it asks for HTTP
// basic auth; an empty user accepts any user name, so the password alone
// decides. Without a password it answers only to loopback clients, judged
// by the connection's own address: X-Forwarded-For and the like are
// ignored, since any client can send them. Build it once: it logs the
// choice when built.
func Admin(user, password string, log *slog.Logger) func(http.Handler) http.Handler {
	if password == "" {
		log.Warn("WEB_ADMIN_PASSWORD is not set: the status page and " + MonitoringPath + " answer only on loopback")
		return func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !loopback(r.RemoteAddr) {
					http.Error(w, "forbidden: set WEB_ADMIN_PASSWORD to allow access from other hosts", http.StatusForbidden)
					return
				}
				next.ServeHTTP(w, r)
			})
		}
	}
	// Comparing digests keeps the comparison constant-time whatever the
	// lengths.
	wantUser, wantPass := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, p, ok := r.BasicAuth()
			gotUser, gotPass := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
			userOK := user == "" || subtle.ConstantTimeCompare(gotUser[:], wantUser[:]) == 1
			passOK := subtle.ConstantTimeCompare(gotPass[:], wantPass[:]) == 1
			if !ok || !userOK || !passOK {
				w.Header().Set("WWW-Authenticate", `Basic realm="ghlsync", charset="UTF-8"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func loopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// sharedRedis hands asynqmon an existing client, so that it uses the
// process's connection pool and the client's owner alone closes it.
type sharedRedis struct{ c redis.UniversalClient }

func (s sharedRedis) MakeRedisClient() any { return s.c }

// Monitoring returns asynqmon, rooted at MonitoringPath, on the process's
// Redis client rc. It needs no closing of its own: closing rc is enough.
// Task payloads and results carry no secrets (DESIGN.md, invariant 7), so
// asynqmon shows them as they are.
func Monitoring(rc redis.UniversalClient) http.Handler {
	return asynqmon.New(asynqmon.Options{RootPath: MonitoringPath, RedisConnOpt: sharedRedis{rc}})
}
