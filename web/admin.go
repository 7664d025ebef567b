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
	"github.com/ghlsync/ghlsync/internal/config"
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
	// ViewerUser and ViewerPassword, when ViewerPassword is set, log in
	// the viewer role: it sees every page and changes nothing (any method
	// but GET, HEAD and OPTIONS is refused with 403). An empty ViewerUser
	// accepts any user name. Without a Password there is no viewer: the
	// loopback clients that get through are the admin.
	ViewerUser, ViewerPassword string
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
				next.ServeHTTP(w, r.WithContext(withSession(r.Context(), session{role: RoleAdmin, id: "loopback"})))
			})
		}
	}
	logins := []login{newLogin(RoleAdmin, a.User, a.Password)}
	if a.ViewerPassword != "" {
		logins = append(logins, newLogin(RoleViewer, a.ViewerUser, a.ViewerPassword))
	}
	check := passwordGuard(logins, a.MaxFailures, a.FailureWindow, a.Clock, log)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !hostOK(w, r) {
				return
			}
			who, ok := check(w, r)
			if !ok {
				return
			}
			if who.role == RoleViewer && !safeMethod(r.Method) {
				http.Error(w, "forbidden: the viewer login ("+config.VarViewerUser+") sees every page and changes nothing; log in as the admin ("+config.VarAdminUser+") to change things", http.StatusForbidden)
				return
			}
			next.ServeHTTP(w, r.WithContext(withSession(r.Context(), who)))
		})
	}
}

// MetricsGuard asks for the /metrics login (METRICS_USER,
// METRICS_PASSWORD; an empty user accepts any name) on every request,
// with the admin guard's limit on wrong passwords. It checks no Host: a
// scraper reaches the process by whatever name its network gives it, and
// no browser holds this login for a rebinding page to use.
func MetricsGuard(user, password string, log *slog.Logger, clk clock.Clock) func(http.Handler) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	check := passwordGuard([]login{newLogin(RoleViewer, user, password)}, 0, 0, clk, log)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, ok := check(w, r); ok {
				next.ServeHTTP(w, r)
			}
		})
	}
}

// passwordGuard checks a request's basic auth against logins, and returns
// the session of the one it matches; when none does it answers the
// request itself (401, or 429 to a client that sent more than limit wrong
// passwords within window, even with the right one, else guessing would
// go on; default 5 per minute) and returns false.
func passwordGuard(logins []login, limit int, window time.Duration, clk clock.Clock, log *slog.Logger) func(http.ResponseWriter, *http.Request) (session, bool) {
	if limit <= 0 {
		limit = 5
	}
	if window <= 0 {
		window = time.Minute
	}
	failures := newThrottle(limit, window, clk)
	return func(w http.ResponseWriter, r *http.Request) (session, bool) {
		client := clientAddress(r)
		if wait, blocked := failures.blocked(client); blocked {
			tooMany(w, wait, "too many wrong passwords from your address")
			return session{}, false
		}
		u, p, ok := r.BasicAuth()
		var who *session
		if ok {
			who = logIn(logins, u, p)
		}
		if who == nil {
			// A request without credentials is a browser asking
			// what to prompt for, not a guess.
			if r.Header.Get("Authorization") != "" && failures.add(client) {
				log.Warn("admin: too many wrong passwords; refusing the client for a while", "client", client, "for", window)
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="ghlsync", charset="UTF-8"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return session{}, false
		}
		return *who, true
	}
}

// login is one user name and password the guard accepts, as digests:
// comparing digests keeps the comparison constant-time whatever the
// lengths.
type login struct {
	role       Role
	anyUser    bool
	user, pass [sha256.Size]byte
}

func newLogin(role Role, user, password string) login {
	return login{role: role, anyUser: user == "", user: sha256.Sum256([]byte(user)), pass: sha256.Sum256([]byte(password))}
}

// logIn returns the session of the first login that u and p match, nil
// when none does. Every login is compared, so the time taken does not say
// which matched.
func logIn(logins []login, u, p string) *session {
	gotUser, gotPass := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
	var who *session
	for _, l := range logins {
		userOK := l.anyUser || subtle.ConstantTimeCompare(gotUser[:], l.user[:]) == 1
		passOK := subtle.ConstantTimeCompare(gotPass[:], l.pass[:]) == 1
		if userOK && passOK && who == nil {
			// The id binds CSRF tokens to this login: another user, or
			// this one after a password change, cannot use them.
			who = &session{role: l.role, id: string(l.role) + "\x00" + u + "\x00" + string(gotPass[:])}
		}
	}
	return who
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
// Redis client rc: the admin gets the whole of it, anyone else (a viewer,
// or a request that did not pass the guard) asynqmon's read-only mode,
// which hides its buttons and refuses its API's changes. It needs no
// closing of its own: closing rc is enough. Task payloads and results
// carry no secrets (DESIGN.md, invariant 7), so asynqmon shows them as
// they are.
func Monitoring(rc redis.UniversalClient) http.Handler {
	full := asynqmon.New(asynqmon.Options{RootPath: MonitoringPath, RedisConnOpt: sharedRedis{rc}})
	readOnly := asynqmon.New(asynqmon.Options{RootPath: MonitoringPath, RedisConnOpt: sharedRedis{rc}, ReadOnly: true})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s, ok := sessionOf(r.Context()); ok && s.role == RoleAdmin {
			full.ServeHTTP(w, r)
			return
		}
		readOnly.ServeHTTP(w, r)
	})
}
