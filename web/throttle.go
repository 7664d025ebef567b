package web

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/ghlsync/ghlsync/internal/clock"
)

// maxClients bounds the memory of a throttle: past it, new client
// addresses share one budget until the windows of the others end, so a
// flood from many addresses costs a fixed amount of memory.
const maxClients = 10000

// throttle counts events per client address in fixed windows: at most
// limit per window from one client. It is in memory, per process: with N
// web replicas a client gets N times the budget, which still bounds a
// flood. It is safe for concurrent use.
type throttle struct {
	limit  int
	window time.Duration
	clock  clock.Clock

	mu        sync.Mutex
	clients   map[string]*bucket
	lastPrune time.Time
}

type bucket struct {
	start time.Time
	n     int
}

func newThrottle(limit int, window time.Duration, c clock.Clock) *throttle {
	return &throttle{limit: limit, window: window, clock: clock.Or(c), clients: map[string]*bucket{}}
}

// blocked says whether the client has used up its window, and for how
// much longer.
func (t *throttle) blocked(client string) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock.Now()
	b := t.bucket(client, now, false)
	if b == nil || b.n < t.limit {
		return 0, false
	}
	return b.start.Add(t.window).Sub(now), true
}

// add counts one event of the client's and says whether it was the one
// that used up the window.
func (t *throttle) add(client string) (last bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.bucket(client, t.clock.Now(), true)
	b.n++
	return b.n == t.limit
}

// take counts one event unless the window is used up; then it says how
// long until the next is allowed.
func (t *throttle) take(client string) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock.Now()
	b := t.bucket(client, now, true)
	if b.n >= t.limit {
		return b.start.Add(t.window).Sub(now), false
	}
	b.n++
	return 0, true
}

// bucket returns the client's current window, starting a new one (when
// create) if it has none or its last has ended.
func (t *throttle) bucket(client string, now time.Time, create bool) *bucket {
	b := t.clients[client]
	if b != nil && now.Sub(b.start) < t.window {
		return b
	}
	if !create {
		return nil
	}
	if b == nil && len(t.clients) >= maxClients {
		if now.Sub(t.lastPrune) >= t.window {
			t.lastPrune = now
			for k, old := range t.clients {
				if now.Sub(old.start) >= t.window {
					delete(t.clients, k)
				}
			}
		}
		if len(t.clients) >= maxClients {
			client = "overflow"
			if b = t.clients[client]; b != nil && now.Sub(b.start) < t.window {
				return b
			}
		}
	}
	b = &bucket{start: now}
	t.clients[client] = b
	return b
}

// clientAddress is who a throttle counts a request against: the peer
// address of the connection (forwarding headers are any client's to
// write), with IPv6 addresses taken by their /64, which one client
// usually holds whole.
func clientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// tooMany answers 429 with Retry-After in whole seconds.
func tooMany(w http.ResponseWriter, wait time.Duration, msg string) {
	secs := int((wait + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	http.Error(w, msg+"; try again in "+strconv.Itoa(secs)+" s", http.StatusTooManyRequests)
}
