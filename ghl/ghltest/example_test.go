package ghltest_test

import (
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
)

// A consent, a code exchange and a refresh against the fake, with a fault
// that loses the refresh answer after GHL has rotated the token.
func Example() {
	s := ghltest.NewServer(ghltest.Options{ClientID: "app", ClientSecret: "secret"})
	defer s.Close()
	s.AddLocation("loc1", "co1")

	token := func(form url.Values) (status int, tok map[string]any) {
		form.Set("client_id", "app")
		form.Set("client_secret", "secret")
		resp, err := s.Client().PostForm(s.URL+"/oauth/token", form)
		if err != nil {
			return 0, nil
		}
		defer resp.Body.Close()
		json.NewDecoder(resp.Body).Decode(&tok)
		return resp.StatusCode, tok
	}

	code := s.AuthorizeCode("Location", "loc1")
	status, tok := token(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "user_type": {"Location"}})
	fmt.Println(status, tok["userType"], tok["locationId"], s.Valid("loc1", tok["access_token"].(string)))

	rt := tok["refresh_token"].(string)
	s.InjectFault(ghltest.Fault{Path: "/oauth/token", DropAfter: true, Times: 1})
	status, _ = token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	fmt.Println("lost answer:", status, "rotations:", s.Rotations("loc1"))

	status, tok = token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	fmt.Println(status, tok["refresh_token"] == s.CurrentRefreshToken("loc1"), "grace reuses:", s.GraceReuses("loc1"))
	// Output:
	// 200 Location loc1 true
	// lost answer: 0 rotations: 1
	// 200 true grace reuses: 1
}
