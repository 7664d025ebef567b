// Package embedredis runs an in-process Redis (miniredis) for the
// standalone mode and for tests without TEST_REDIS_URL.
//
// miniredis only lets keys expire when told that time passed; a real Redis
// expires them on its own. ghlsync relies on expiry (lock TTLs, OAuth
// states), so the server here is told every tick how much time passed.
package embedredis

import (
	"time"

	"github.com/alicebob/miniredis/v2"
)

// Server is a running embedded Redis.
type Server struct {
	*miniredis.Miniredis
	stop chan struct{}
	done chan struct{}
}

// Start runs an embedded Redis on addr ("" or "127.0.0.1:0" for any free
// port on loopback).
func Start(addr string) (*Server, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr(addr); err != nil {
		return nil, err
	}
	s := &Server{Miniredis: mr, stop: make(chan struct{}), done: make(chan struct{})}
	go s.clock(50 * time.Millisecond)
	return s, nil
}

// URL is the redis:// URL of the server.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

func (s *Server) clock(tick time.Duration) {
	defer close(s.done)
	t := time.NewTicker(tick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.FastForward(now.Sub(last))
			last = now
		}
	}
}

// Close stops the server.
func (s *Server) Close() {
	close(s.stop)
	<-s.done
	s.Miniredis.Close()
}
