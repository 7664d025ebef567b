package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealthcheck(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			io.WriteString(w, "ok\n")
			return
		}
		http.Error(w, "not ready: redis: connection refused", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()

	for _, tc := range []struct {
		name string
		args []string
		want int
		says string
	}{
		{"healthy", []string{srv.URL + "/healthz"}, 0, ""},
		{"503", []string{srv.URL + "/readyz"}, 1, "redis"},
		{"nothing listening", []string{down.URL + "/healthz"}, 1, "healthcheck:"},
		{"no URL", nil, 2, "needs URL (see healthcheck -h)"},
		{"bad URL", []string{"http://%zz"}, 2, "healthcheck:"},
	} {
		var stderr strings.Builder
		if got := run(context.Background(), tc.args, &stderr); got != tc.want {
			t.Errorf("%s: exit %d, want %d (%s)", tc.name, got, tc.want, stderr.String())
		}
		if !strings.Contains(stderr.String(), tc.says) {
			t.Errorf("%s: stderr %q does not say %q", tc.name, stderr.String(), tc.says)
		}
	}
}
