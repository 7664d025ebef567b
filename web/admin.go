package web

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/hibiken/asynqmon"
	"github.com/redis/go-redis/v9"

	"github.com/ghlsync/ghlsync/internal/clock"
)

// MonitoringPath is where asynqmon is served.
const MonitoringPath = "/monitoring"

// Admin guards the operator's pages: the status page and its JSON,
// asynqmon, and /metrics when it is served beside them. Its fields are
// set once, before Guard is called.
type Admin struct {
	// User and Password ask for HTTP basic auth; an empty User accepts any
	// user name, so the password alone decides. Without a Password only
	// loopback clients get through, judged by the connection's own
	// address, and only when no proxy forwarded the request.
	User, Password string
	// PublicURL is the origin browsers reach the web process at
	// (WEB_PUBLIC_URL). A request for another Host is refused with 421, so
	// a name an attacker points at this server (DNS rebinding) reaches
	// nothing; loopback names (localhost, 127.0.0.1, [::1]) are accepted
	// too, since no other site's page can be served under them. Empty
	// accepts loopback names only.
	PublicURL string
	// MaxFailures wrong passwords from one client address within
	// FailureWindow, and the client gets 429 until the window ends, even
	// for the right password (else guessing would go on). Default 5 per
	// minute.
	MaxFailures   int
	FailureWindow time.Duration
	Log           *slog.Logger
	Clock         clock.Clock
}

// Guard returns the middleware. Build it once: it logs the mode when
// built, and keeps the count of wrong passwords.
func (a *Admin) Guard() func(http.Handler) http.Handler {
	log := a.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hostOK := func(w http.ResponseWriter, r *http.Request) bool {
		if hostAllowed(r.Host, a.PublicURL) {
			return true
		}
		http.Error(w, fmt.Sprintf("misdirected request: ghlsync's admin pages answer at %s (WEB_PUBLIC_URL), not at Host %q", a.PublicURL, r.Host), http.StatusMisdirectedRequest)
		return false
	}
	if a.Password == "" {
		log.Warn("WEB_ADMIN_PASSWORD is not set: the status page and " + MonitoringPath + " answer only on loopback, and not through a proxy")
		return func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !loopback(r.RemoteAddr) {
					http.Error(w, "forbidden: set WEB_ADMIN_PASSWORD to allow access from other hosts", http.StatusForbidden)
					return
				}
				if h := forwarded(r); h != "" {
					http.Error(w, "forbidden: the request came through a proxy ("+h+"), so it may come from anywhere: set WEB_ADMIN_PASSWORD", http.StatusForbidden)
					return
				}
				if !hostOK(w, r) {
					return
				}
				next.ServeHTTP(w, r)
			})
		}
	}
	limit, window := a.MaxFailures, a.FailureWindow
	if limit <= 0 {
		limit = 5
	}
	if window <= 0 {
		window = time.Minute
	}
	failures := newThrottle(limit, window, a.Clock)
	// Comparing digests keeps the comparison constant-time whatever the
	// lengths.
	wantUser, wantPass := sha256.Sum256([]byte(a.User)), sha256.Sum256([]byte(a.Password))
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !hostOK(w, r) {
				return
			}
			client := clientAddress(r)
			if wait, blocked := failures.blocked(client); blocked {
				tooMany(w, wait, "too many wrong passwords from your address")
				return
			}
			u, p, ok := r.BasicAuth()
			gotUser, gotPass := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
			userOK := a.User == "" || subtle.ConstantTimeCompare(gotUser[:], wantUser[:]) == 1
			passOK := subtle.ConstantTimeCompare(gotPass[:], wantPass[:]) == 1
			if !ok || !userOK || !passOK {
				// A request without credentials is a browser asking
				// what to prompt for, not a guess.
				if r.Header.Get("Authorization") != "" && failures.add(client) {
					log.Warn("admin: too many wrong passwords; refusing the client for a while", "client", client, "for", window)
				}
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
