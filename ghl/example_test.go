package ghl_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/internal/clock"
)

// Refresh spends a refresh token for a new token. Store the new
// RefreshToken at once: the old one no longer works.
func ExampleOAuthService_Refresh() {
	// A stand-in for GHL's token endpoint.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("refresh_token") != "old-refresh-token" {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"statusCode":400,"message":"Invalid grant: refresh token is invalid"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"new-access-token","token_type":"Bearer","expires_in":86399,
			"refresh_token":"new-refresh-token","scope":"contacts.write","userType":"Location",
			"locationId":"loc-1","companyId":"co-1","userId":"user-1"}`)
	}))
	defer srv.Close()

	client, err := ghl.NewClient(ghl.Config{
		BaseURL:      srv.URL, // default: ghl.DefaultBaseURL
		ClientID:     "client-id",
		ClientSecret: "client-secret",
		RedirectURI:  "https://app.example/api/auth/callback",
		Timeout:      10 * time.Second,
		Clock:        clock.NewFake(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)),
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	tok, _, err := client.OAuth.Refresh(ctx, "old-refresh-token", ghl.UserTypeLocation)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tok.LocationID, tok.Expiry.Format(time.RFC3339))
	fmt.Println(tok) // tokens are masked

	_, _, err = client.OAuth.Refresh(ctx, "spent-refresh-token", ghl.UserTypeLocation)
	switch {
	case errors.Is(err, ghl.ErrInvalidGrant):
		fmt.Println("reconnect the location:", err)
	case ghl.Temporary(err):
		fmt.Println("retry later with the same refresh token")
	}
	// Output:
	// loc-1 2025-03-02T11:59:59Z
	// ghl.Token{AccessToken:"[redacted]" RefreshToken:"[redacted]" TokenType:"Bearer" Expiry:2025-03-02T11:59:59Z Scope:"contacts.write" UserType:"Location" LocationID:"loc-1" CompanyID:"co-1" UserID:"user-1"}
	// reconnect the location: ghl: POST /oauth/token: 400 Bad Request: Invalid grant: refresh token is invalid
}
