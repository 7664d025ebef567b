package ghltest

import (
	"bytes"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Fault describes a misbehaviour to inject into matching requests. Of the
// actions, Latency comes first; then Drop, else Status, else the request is
// served, delayed by LatencyAfter and, with DropAfter, never answered.
//
// Go's http.Transport silently retries a dropped idempotent request (GET) on
// a reused connection; use a POST or a fresh connection to see the drop.
type Fault struct {
	// Path matches requests whose URL path starts with it; "" matches all.
	// A Path ending in "{$}" matches only the path before it ("/contacts/{$}"
	// is the create, not every contact call).
	Path string
	// Method, when set, matches only requests of that method.
	Method string
	// Location matches requests about one location (or company), "" any:
	// the subject of the Bearer token for API calls, of the code or refresh
	// token for /oauth/token, the locationId field for /oauth/locationToken.
	Location string

	// Latency is waited before acting on the request.
	Latency time.Duration
	// LatencyAfter is waited after acting (a token already rotated, the
	// OnTokenIssued hook already called) and before answering.
	LatencyAfter time.Duration
	// Status answers this status without acting, with Body, by default a
	// GHL-shaped JSON error.
	Status int
	Body   string
	// Drop hijacks and closes the connection without answering or acting.
	Drop bool
	// DropAfter acts, then closes the connection without answering.
	DropAfter bool

	// Times is how many of the next matching requests the fault applies to;
	// 0 applies it to every matching request until removed.
	Times int
}

type faultEntry struct {
	f    Fault
	left int
}

// InjectFault adds a fault. When several match a request the one injected
// first applies. remove takes it away (idempotent).
func (s *Server) InjectFault(f Fault) (remove func()) {
	e := &faultEntry{f: f, left: f.Times}
	s.faultMu.Lock()
	s.faults = append(s.faults, e)
	s.nFaults.Store(int32(len(s.faults)))
	s.faultMu.Unlock()
	return func() {
		s.faultMu.Lock()
		defer s.faultMu.Unlock()
		s.faults = slices.DeleteFunc(s.faults, func(x *faultEntry) bool { return x == e })
		s.nFaults.Store(int32(len(s.faults)))
	}
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	s.faults = nil
	s.nFaults.Store(0)
}

// takeFault returns the fault that applies to a request, using up one of
// its Times.
func (s *Server) takeFault(method, path, subj string) (Fault, bool) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	for i, e := range s.faults {
		if !pathMatches(path, e.f.Path) || (e.f.Location != "" && e.f.Location != subj) ||
			(e.f.Method != "" && e.f.Method != method) {
			continue
		}
		if e.f.Times > 0 {
			e.left--
			if e.left == 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
				s.nFaults.Store(int32(len(s.faults)))
			}
		}
		return e.f, true
	}
	return Fault{}, false
}

func pathMatches(path, pattern string) bool {
	if exact, ok := strings.CutSuffix(pattern, "{$}"); ok {
		return path == exact
	}
	return strings.HasPrefix(path, pattern)
}

// serve answers a request, faults included; serveHTTP adds the saving.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	subj := s.observe(r)
	if r.URL.Path == "/oauth/token" || r.URL.Path == "/oauth/locationToken" {
		defer s.tokenCallsInFlight.enter()()
	}
	if s.nFaults.Load() == 0 {
		s.mux.ServeHTTP(w, r)
		return
	}
	f, ok := s.takeFault(r.Method, r.URL.Path, subj)
	if !ok {
		s.mux.ServeHTTP(w, r)
		return
	}
	s.mu.Lock()
	s.stats.faults++
	s.mu.Unlock()

	if f.Latency > 0 && !s.wait(r, f.Latency) {
		return
	}
	switch {
	case f.Drop:
		drop(w)
		return
	case f.Status != 0:
		writeFault(w, f)
		return
	case f.LatencyAfter <= 0 && !f.DropAfter:
		s.mux.ServeHTTP(w, r)
		return
	}
	bw := &bufferedWriter{header: make(http.Header)}
	s.mux.ServeHTTP(bw, r)
	if f.LatencyAfter > 0 && !s.wait(r, f.LatencyAfter) {
		return
	}
	if f.DropAfter {
		drop(w)
		return
	}
	bw.flush(w)
}

// wait sleeps for d; false if the client went away meanwhile. Close cuts it
// short so a server never hangs in shutdown on an injected latency.
func (s *Server) wait(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.done:
		return true
	case <-r.Context().Done():
		return false
	}
}

func writeFault(w http.ResponseWriter, f Fault) {
	if f.Body == "" {
		writeError(w, f.Status, http.StatusText(f.Status))
		return
	}
	ct := "text/plain; charset=utf-8"
	if strings.HasPrefix(strings.TrimSpace(f.Body), "{") {
		ct = "application/json; charset=utf-8"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(f.Body)))
	w.WriteHeader(f.Status)
	w.Write([]byte(f.Body))
}

// drop closes the connection without an answer.
func drop(w http.ResponseWriter) {
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		conn.Close()
		return
	}
	panic(http.ErrAbortHandler)
}

// bufferedWriter holds an answer back so a fault can delay or drop it
// after the request has been acted on.
type bufferedWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedWriter) Header() http.Header { return b.header }

func (b *bufferedWriter) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

func (b *bufferedWriter) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	return b.body.Write(p)
}

func (b *bufferedWriter) flush(w http.ResponseWriter) {
	maps.Copy(w.Header(), b.header)
	b.WriteHeader(http.StatusOK)
	w.WriteHeader(b.status)
	w.Write(b.body.Bytes())
}

// observe finds the subject a request is about (see Fault.Location) and
// counts the request.
func (s *Server) observe(r *http.Request) string {
	var subj, code, refresh, tok string
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/oauth/token":
		r.ParseForm() // the handler reports a bad body
		code, refresh = r.PostForm.Get("code"), r.PostForm.Get("refresh_token")
	case r.Method == http.MethodPost && r.URL.Path == "/oauth/locationToken":
		r.ParseForm()
		subj = r.PostForm.Get("locationId")
	default:
		tok = bearer(r)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case refresh != "":
		if rt := s.st.refresh[refresh]; rt != nil {
			subj = rt.Grant.subject()
		}
	case code != "":
		if c := s.st.codes[code]; c != nil {
			subj = c.Grant.subject()
		}
	case tok != "":
		if at := s.st.access[tok]; at != nil {
			subj = at.Grant.subject()
		}
	}
	s.stats.requests[reqKey{path: r.URL.Path, subject: subj}]++
	return subj
}
