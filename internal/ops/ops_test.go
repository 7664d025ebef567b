package ops_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ghlsync/ghlsync/internal/ops"
)

func get(h http.Handler, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

// /healthz says the process is up, whatever its dependencies do; /readyz
// says whether they answer, and names the one that does not.
func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	var failing error
	h := ops.Handler(prometheus.NewRegistry(), func(context.Context) error { return failing })

	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if rec := get(h, path); rec.Code != http.StatusOK {
			t.Errorf("%s while healthy: %d %s", path, rec.Code, rec.Body)
		}
	}

	failing = errors.New("redis: connection refused")
	if rec := get(h, "/healthz"); rec.Code != http.StatusOK {
		t.Errorf("/healthz with Redis down: %d %s", rec.Code, rec.Body)
	}
	rec := get(h, "/readyz")
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "redis") {
		t.Errorf("/readyz with Redis down: %d %s", rec.Code, rec.Body)
	}
}

func TestReadyWithoutCheck(t *testing.T) {
	t.Parallel()
	h := ops.Handler(prometheus.NewRegistry(), nil)
	if rec := get(h, "/readyz"); rec.Code != http.StatusOK {
		t.Errorf("/readyz: %d %s", rec.Code, rec.Body)
	}
}
