package web_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/store/storetest"
)

// The callback's error page says what went wrong with the code exchange
// and which setting to check: the client credentials, the redirect URI,
// or a code already used.
func TestCallbackSaysWhatWentWrong(t *testing.T) {
	t.Parallel()
	s, stack := newServer(t)
	stack.Fake.AddLocation("locA", "comp1")
	h := s.Handler()

	// A code the consent gave for another redirect URI than ghlsync's.
	noFollow := *stack.Fake.Client()
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := noFollow.Get(stack.Fake.URL + "/v2/oauth/chooselocation?" + url.Values{"client_id": {storetest.ClientID},
		"redirect_uri": {"https://elsewhere.example/cb"}, "location_id": {"locA"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	otherRedirect := back.Query().Get("code")

	used := stack.Fake.AuthorizeCode("Location", "locA")
	if rec := callback(t, h, used, startConnect(t, h, "")); rec.Code != http.StatusOK {
		t.Fatalf("first use of a code: %d %s", rec.Code, rec.Body)
	}

	wrongSecret, err := ghl.NewClient(ghl.Config{BaseURL: stack.Fake.URL, ClientID: storetest.ClientID,
		ClientSecret: "not-the-secret", RedirectURI: "http://localhost:8080/api/auth/callback"})
	if err != nil {
		t.Fatal(err)
	}
	bad := *s
	bad.OAuth = wrongSecret.OAuth
	badH := bad.Handler()

	for _, tc := range []struct {
		name   string
		h      http.Handler
		code   string
		status int
		want   []string
	}{
		{"wrong client secret", badH, stack.Fake.AuthorizeCode("Location", "locA"), http.StatusBadGateway,
			[]string{"invalid_client", "GHL_CLIENT_ID", "GHL_CLIENT_SECRET", "/api/auth/connect"}},
		{"another redirect URI", h, otherRedirect, http.StatusBadGateway,
			[]string{"redirect URI", "GHL_REDIRECT_URI", "/api/auth/connect"}},
		{"code used already", h, used, http.StatusBadRequest,
			[]string{"authorization code", "works once", "/api/auth/connect"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := callback(t, tc.h, tc.code, startConnect(t, tc.h, ""))
			body := rec.Body.String()
			if rec.Code != tc.status {
				t.Errorf("status %d, want %d: %s", rec.Code, tc.status, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("the page does not say %q: %s", w, body)
				}
			}
			if strings.Contains(body, "not-the-secret") || strings.Contains(body, storetest.ClientSecret) {
				t.Errorf("the page shows a client secret: %s", body)
			}
		})
	}
}
