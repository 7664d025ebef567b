package ghltest

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// apiHandler serves an authenticated API request; g is a copy of the
// grant of the caller's access token.
type apiHandler func(w http.ResponseWriter, r *http.Request, g *grant)

// bearer returns the token of an "Authorization: Bearer" header, "" if none.
func bearer(r *http.Request) string {
	const prefix = "Bearer "
	h := r.Header.Get("Authorization")
	if len(h) > len(prefix) && strings.EqualFold(h[:len(prefix)], prefix) {
		return h[len(prefix):]
	}
	return ""
}

// api wraps h with what every API call goes through, in this order: the
// access token (401), a user the path names that does not exist (401, see
// SetUserMissing), the scope the route requires (401, see routeScopes;
// bound when the route is registered), the rate limit when limited
// (headers on every answer, 429 over it) and the Version header (400).
func (s *Server) api(version string, limited bool, h apiHandler) http.Handler {
	return &apiRoute{s: s, version: version, limited: limited, h: h}
}

// apiRoute is an API route; router.Handle sets its scope.
type apiRoute struct {
	s       *Server
	version string
	limited bool
	h       apiHandler
	scope   string
}

func (a *apiRoute) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := a.s
	tok := bearer(r)
	now := s.opts.Now()
	s.mu.Lock()
	g, ok := s.authLocked(tok, now)
	denied := ""
	switch {
	case ok && s.namesMissingUserLocked(r.URL.Path):
		denied = msgUserMissing
		s.stats.userMissing[g.subject()]++
	case ok && a.scope != "" && !hasScope(g.Scope, a.scope):
		denied = msgScope
		s.stats.scopeDenied[g.subject()]++
	}
	var rl rateResult
	if ok && denied == "" && a.limited {
		rl = s.rateLocked(g.subject(), now)
	}
	s.mu.Unlock()
	switch {
	case !ok:
		writeError(w, http.StatusUnauthorized, "Invalid JWT")
		return
	case denied != "":
		writeJSON(w, http.StatusUnauthorized, struct {
			StatusCode int    `json:"statusCode"`
			Message    string `json:"message"`
			Error      string `json:"error"`
		}{http.StatusUnauthorized, denied, "Unauthorized"})
		return
	}
	if a.limited {
		s.setRateHeaders(w.Header(), rl)
		if !rl.allowed {
			writeError(w, http.StatusTooManyRequests, "Too many requests")
			return
		}
	}
	switch v := r.Header.Get("Version"); {
	case v == "":
		writeError(w, http.StatusBadRequest, "Missing parameter: Version")
		return
	case v != a.version:
		writeError(w, http.StatusBadRequest, "Invalid parameter: Version")
		return
	}
	a.h(w, r, &g)
}

// authLocked checks an access token and counts why it failed. Every
// failure answers the same 401, as GHL gives a client no way to tell.
func (s *Server) authLocked(tok string, now time.Time) (grant, bool) {
	at := s.st.access[tok]
	switch {
	case at == nil:
		s.stats.unknownTokenCalls++
	case at.Revoked:
		s.stats.revokedTokenCalls++
	case !now.Before(at.Expiry):
		s.stats.expiredTokenCalls++
	default:
		return at.Grant, true
	}
	return grant{}, false
}

// window is one subject's rate limit state: a sliding log of the accepted
// requests of the last RateInterval, and a count per daily window (which
// starts at Options.DailyReset, not at UTC midnight).
type window struct {
	times    []int64 // UnixNano of accepted requests, oldest first
	max      int     // most accepted requests seen in one interval
	accepted int     // every accepted request
	day      int64   // daily windows since the epoch, of dayCount
	dayCount int
}

type rateResult struct {
	allowed                   bool
	remaining, dailyRemaining int
}

func (s *Server) rateLocked(subj string, now time.Time) rateResult {
	w := s.limits[subj]
	if w == nil {
		w = &window{}
		s.limits[subj] = w
	}
	t := now.UnixNano()
	cut := t - int64(s.opts.RateInterval)
	i := 0
	for i < len(w.times) && w.times[i] <= cut {
		i++
	}
	w.times = w.times[i:]
	if day := s.dayOf(now); day != w.day {
		w.day, w.dayCount = day, 0
	}
	limit, daily := s.opts.RateLimit, s.opts.DailyLimit
	if s.opts.EnforceRateLimit && (len(w.times) >= limit || w.dayCount >= daily) {
		s.stats.rateLimited[subj]++
		return rateResult{remaining: max(limit-len(w.times), 0), dailyRemaining: max(daily-w.dayCount, 0)}
	}
	w.times = append(w.times, t)
	w.accepted++
	w.dayCount++
	w.max = max(w.max, len(w.times))
	return rateResult{
		allowed:        true,
		remaining:      max(limit-len(w.times), 0),
		dailyRemaining: max(daily-w.dayCount, 0),
	}
}

func (s *Server) setRateHeaders(h http.Header, rl rateResult) {
	h.Set("X-RateLimit-Max", strconv.Itoa(s.opts.RateLimit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(rl.remaining))
	h.Set("X-RateLimit-Interval-Milliseconds", strconv.FormatInt(s.opts.RateInterval.Milliseconds(), 10))
	h.Set("X-RateLimit-Limit-Daily", strconv.Itoa(s.opts.DailyLimit))
	h.Set("X-RateLimit-Daily-Remaining", strconv.Itoa(rl.dailyRemaining))
}

// dayOf numbers the daily window now falls in: windows start
// Options.DailyReset after each UTC midnight.
func (s *Server) dayOf(now time.Time) int64 {
	return now.Add(-s.opts.DailyReset).UnixNano() / int64(24*time.Hour)
}

// DailyWindowEnd returns when the daily window that now falls in ends, and
// the location's quota is whole again.
func (s *Server) DailyWindowEnd(now time.Time) time.Time {
	return time.Unix(0, (s.dayOf(now)+1)*int64(24*time.Hour)).UTC().Add(s.opts.DailyReset)
}
