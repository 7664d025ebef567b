package web

import (
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/ghlsync/ghlsync/internal/config"
)

// WebhookRoute is GHL's webhook endpoint. GHL calls it from its servers,
// with no Origin, and its signature is what authenticates it, so
// SameOrigin lets it through.
const WebhookRoute = "POST /api/webhooks/ghl"

// SameOrigin refuses, with 403, every state-changing request (any method
// but GET, HEAD and OPTIONS) that does not prove it comes from ghlsync's
// own pages: a browser's Sec-Fetch-Site of same-origin or none, or, from a
// browser without Sec-Fetch-Site, an Origin that is PublicURL (or the
// loopback address the request was sent to). A browser sends a cached
// basic-auth login and a loopback client's requests along with any
// cross-site form or fetch, so neither proves the operator meant the
// request; these headers do, since a page cannot forge them. A request
// with neither header is refused too: scripts send Origin themselves.
// The check covers asynqmon's XHR API, which has no CSRF token to check.
type SameOrigin struct {
	// PublicURL is the origin the web process is reached at
	// (WEB_PUBLIC_URL), such as https://ghlsync.example.com.
	PublicURL string
	// Exempt are ServeMux patterns of routes authenticated otherwise,
	// such as WebhookRoute.
	Exempt []string
}

// Wrap returns next behind the check.
func (s *SameOrigin) Wrap(next http.Handler) http.Handler {
	exempt := http.NewServeMux()
	for _, p := range s.Exempt {
		exempt.Handle(p, next)
	}
	public := s.PublicURL
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			next.ServeHTTP(w, r)
			return
		}
		if _, pattern := exempt.Handler(r); pattern != "" {
			next.ServeHTTP(w, r)
			return
		}
		if msg := crossSite(r, public); msg != "" {
			http.Error(w, "forbidden: "+msg, http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// crossSite says why r is not proven same-origin, or "" when it is.
func crossSite(r *http.Request, public string) string {
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "same-origin", "none":
		return ""
	case "":
	default:
		return "a state-changing request from another site (Sec-Fetch-Site: " + site + ") is refused"
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return "a state-changing request must come from ghlsync's own pages; from a script, send the header Origin: " + public
	}
	if sameOrigin(origin, public, r.Host) {
		return ""
	}
	return "a state-changing request from another site (Origin: " + origin + ") is refused; ghlsync's address is " + public + " (WEB_PUBLIC_URL)"
}

// sameOrigin says whether a browser's Origin header is the public origin,
// or the loopback address the request was sent to.
func sameOrigin(origin, public, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if config.Origin(u) == public {
		return true
	}
	return loopbackName(u.Host) && strings.EqualFold(u.Host, host)
}

// hostAllowed says whether a request's Host names this server: the public
// origin's host and port, or a loopback name on any port. Checking it
// stops DNS rebinding: a page whose name was pointed at this server sends
// its own name as Host.
func hostAllowed(host, public string) bool {
	if loopbackName(host) {
		return true
	}
	u, err := url.Parse(public)
	if err != nil || u.Host == "" {
		return false
	}
	want := config.Origin(u)
	got := config.Origin(&url.URL{Scheme: u.Scheme, Host: host})
	return got == want
}

// loopbackName says whether a Host (with or without a port) is localhost,
// 127.0.0.1 or ::1: names only this machine can be reached by.
func loopbackName(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	switch strings.ToLower(host) {
	case "localhost", "127.0.0.1", "::1":
		return true
	}
	return false
}

// forwardingHeaders are what reverse proxies add. A request carrying one
// came through a proxy, so its loopback peer address says nothing about
// who sent it.
var forwardingHeaders = []string{
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port",
	"X-Forwarded-Server", "X-Real-Ip", "X-Client-Ip", "X-Cluster-Client-Ip", "True-Client-Ip",
	"Cf-Connecting-Ip", "Fastly-Client-Ip", "X-Original-Forwarded-For", "Via",
}

func forwarded(r *http.Request) string {
	for _, h := range forwardingHeaders {
		if _, ok := r.Header[h]; ok {
			return h
		}
	}
	return ""
}
