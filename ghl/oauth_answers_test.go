package ghl

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// A token answer decodes what ghlsync uses whatever GHL puts beside it:
// side fields of odd types (isBulkInstallation "Bearer" as GHL's spec
// example has it, numbers for ids, objects for strings, unknown fields)
// never fail a refresh, whose rotated refresh token would then be lost.
// Without expires_in the token lives DefaultTokenLife, as GHL's SDK assumes.
func TestTokenAnswers_DecodeOnlyWhatIsUsed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		body string
		want *Token
	}{
		{
			name: "odd side fields",
			body: `{"access_token":"a1","refresh_token":"r1","expires_in":86399,"token_type":7,
				"isBulkInstallation":"Bearer","planId":42,"userId":{"id":"u"},"traceId":["x"],
				"approveAllLocations":"yes","installToFutureLocations":1,"refreshTokenId":null,
				"somethingNew":{"nested":[1,2,3]},"scope":"contacts.write","userType":"Location",
				"locationId":"loc-1","companyId":"co-1","approvedLocations":"loc-1"}`,
			want: &Token{AccessToken: "a1", RefreshToken: "r1", TokenType: "7", ExpiresIn: 86399,
				Expiry: testNow.Add(86399 * time.Second), Scope: "contacts.write", UserType: "Location",
				LocationID: "loc-1", CompanyID: "co-1"},
		},
		{
			name: "no expires_in",
			body: `{"access_token":"a1","refresh_token":"r1","userId":"u1"}`,
			want: &Token{AccessToken: "a1", RefreshToken: "r1", UserID: "u1", ExpiresIn: 86400,
				Expiry: testNow.Add(24 * time.Hour)},
		},
		{
			name: "expires_in as a string",
			body: `{"access_token":"a1","refresh_token":"r1","expires_in":"3600","userId":12}`,
			want: &Token{AccessToken: "a1", RefreshToken: "r1", UserID: "12", ExpiresIn: 3600,
				Expiry: testNow.Add(time.Hour)},
		},
		{
			name: "expires_in of no use",
			body: `{"access_token":"a1","refresh_token":"r1","expires_in":{"s":1}}`,
			want: &Token{AccessToken: "a1", RefreshToken: "r1", ExpiresIn: 86400,
				Expiry: testNow.Add(24 * time.Hour)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, b := setup(t)
			b.mux.HandleFunc("/oauth/token", func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusOK, tc.body)
			})
			tok, _, err := c.OAuth.Refresh(t.Context(), testRefreshToken, UserTypeLocation)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, tok); diff != "" {
				t.Errorf("Token mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// The tokens themselves must be strings: an access token of another type is
// an error, never a token that looks fine.
func TestTokenAnswers_TokensMustBeStrings(t *testing.T) {
	t.Parallel()
	c, b := setup(t)
	b.mux.HandleFunc("/oauth/token", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, `{"access_token":123,"refresh_token":"r1"}`)
	})
	if _, _, err := c.OAuth.Refresh(t.Context(), testRefreshToken, UserTypeLocation); err == nil {
		t.Fatal("an access token that is a number was accepted")
	}
}

// The 401s of GHL are told apart: only an invalid or expired token is
// IsTokenRejected (a refresh helps); a missing scope is IsScopeDenied with
// the scope named, from GHL's message when it names one, else from the
// endpoint called; a removed user is IsUserMissing.
func TestUnauthorizedKinds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                         string
		body                         string
		rejected, scope, userMissing bool
		missing                      string
	}{
		{name: "invalid token", body: `{"statusCode":401,"message":"Invalid JWT"}`, rejected: true},
		{name: "expired token", body: `{"statusCode":401,"message":"jwt expired"}`, rejected: true},
		{name: "scope", body: `{"statusCode":401,"message":"The token is not authorized for this scope."}`,
			scope: true, missing: "contacts.write"},
		{name: "scope named", body: `{"statusCode":401,"message":"The token is not authorized for this scope: calendars/events.write","error":"Unauthorized"}`,
			scope: true, missing: "calendars/events.write"},
		{name: "user", body: `{"statusCode":401,"message":"The user does not exist."}`, userMissing: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, b := setup(t)
			b.mux.HandleFunc("/contacts/upsert", func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusUnauthorized, tc.body)
			})
			_, _, _, err := c.Contacts.Upsert(t.Context(), testAccessToken, &Contact{LocationID: "loc-1", Email: "a@example.com"})
			if err == nil {
				t.Fatal("no error")
			}
			if got := IsTokenRejected(err); got != tc.rejected {
				t.Errorf("IsTokenRejected = %v, want %v (%v)", got, tc.rejected, err)
			}
			if got := IsScopeDenied(err); got != tc.scope {
				t.Errorf("IsScopeDenied = %v, want %v", got, tc.scope)
			}
			if got := IsUserMissing(err); got != tc.userMissing {
				t.Errorf("IsUserMissing = %v, want %v", got, tc.userMissing)
			}
			if got := MissingScope(err); got != tc.missing {
				t.Errorf("MissingScope = %q, want %q", got, tc.missing)
			}
			if !IsAccessDenied(err) {
				t.Error("a 401 is not IsAccessDenied")
			}
		})
	}
}

// AllInstalledLocations follows GHL's skip/limit pages to the end, asking
// for installed locations only, with an agency token.
func TestAllInstalledLocations(t *testing.T) {
	t.Parallel()
	c, b := setup(t)
	const total = 45
	var calls int
	b.mux.HandleFunc("/oauth/installedLocations", func(w http.ResponseWriter, r *http.Request) {
		calls++
		testMethod(t, r, http.MethodGet)
		testAPIHeaders(t, r, "2021-07-28", testAccessToken)
		q := r.URL.Query()
		if q.Get("companyId") != "co-1" || q.Get("appId") != "app-1" || q.Get("isInstalled") != "true" {
			t.Errorf("query = %v", q)
		}
		skip, _ := strconv.Atoi(q.Get("skip"))
		limit, _ := strconv.Atoi(q.Get("limit"))
		var locs string
		for i := skip; i < min(skip+limit, total); i++ {
			if locs != "" {
				locs += ","
			}
			locs += fmt.Sprintf(`{"_id":"loc-%02d","name":"Clinic %d","address":"","isInstalled":true,"extra":{"a":1}}`, i, i)
		}
		writeJSON(w, http.StatusOK, fmt.Sprintf(`{"locations":[%s],"count":%d,"installToFutureLocations":"odd"}`, locs, total))
	})
	got, err := c.OAuth.AllInstalledLocations(t.Context(), testAccessToken, "co-1", "app-1", 20)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != total || got[0].ID != "loc-00" || got[total-1].ID != "loc-44" || got[7].Name != "Clinic 7" {
		t.Fatalf("got %d locations: %+v", len(got), got)
	}
	if calls != 3 {
		t.Errorf("%d pages asked for, want 3", calls)
	}
}

// Config.AppVersionID and LoginWindowOpenMode reach the consent URL.
func TestAuthorizeURL_VersionAndWindow(t *testing.T) {
	t.Parallel()
	c, _ := setup(t, func(cfg *Config) { cfg.AppVersionID = "ver-1"; cfg.LoginWindowOpenMode = "self" })
	got := c.OAuth.AuthorizeURL("https://m.example", "s1", []string{"contacts.write"})
	want := "https://m.example/v2/oauth/chooselocation?response_type=code" +
		"&redirect_uri=https%3A%2F%2Fapp.example%2Fapi%2Fauth%2Fcallback&client_id=client-id-1" +
		"&scope=contacts.write&state=s1&version_id=ver-1&loginWindowOpenMode=self"
	if got != want {
		t.Errorf("AuthorizeURL =\n%s\nwant\n%s", got, want)
	}
}
