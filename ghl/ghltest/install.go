package ghltest

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// InstallURL simulates "Add App" in GHL's marketplace: the app is installed
// for the location (userType "Location") or the agency (userType "Company",
// approvedLocations by default all of its locations), and GHL sends the
// browser to redirectURI with a code and no state, as it does for an
// install it initiated (docs/oauth/Faqs.md). It returns that URL; GET it to
// deliver the code. Unknown ids are registered.
func (s *Server) InstallURL(redirectURI, userType, id string, approvedLocations ...string) string {
	code := s.newCode(userType, id, approvedLocations, "", redirectURI)
	sep := "?"
	if strings.Contains(redirectURI, "?") {
		sep = "&"
	}
	return redirectURI + sep + url.Values{"code": {code}}.Encode()
}

// InstallApp marks the app installed on locations of companyID, as an
// agency's bulk install does, registering them as the company's.
// GET /oauth/installedLocations lists them, and /oauth/locationToken mints
// tokens for them with the agency's token, whether or not a consent
// approved them.
func (s *Server) InstallApp(companyID string, locationIDs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, loc := range locationIDs {
		s.st.addLocationLocked(loc, companyID).AppInstalled = true
	}
	s.changedLocked()
}

// SetInstallToFutureLocations sets the agency's choice to install the app
// on locations it adds later: such locations (AddLocation) are installed,
// and the agency's token answers say installToFutureLocations.
func (s *Server) SetInstallToFutureLocations(companyID string, future bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.addCompanyLocked(companyID).InstallToFuture = future
	s.changedLocked()
}

// installedLocationJSON is InstalledLocationSchema of apps/oauth.json.
type installedLocationJSON struct {
	ID          string `json:"_id"`
	Name        string `json:"name"`
	Address     string `json:"address"`
	IsInstalled bool   `json:"isInstalled"`
}

// handleInstalledLocations serves GET /oauth/installedLocations: an agency
// token lists its company's locations, a page at a time (skip, limit;
// default 0 and 20), those where the app is installed only with
// isInstalled=true. companyId and appId are required; appId must be the
// app's (the part of the client id before its first "-").
func (s *Server) handleInstalledLocations(w http.ResponseWriter, r *http.Request, g *grant) {
	q := r.URL.Query()
	var missing []string
	for _, p := range []string{"companyId", "appId"} {
		if q.Get(p) == "" {
			missing = append(missing, p+" should not be empty")
		}
	}
	if len(missing) > 0 {
		writeValidation(w, missing...)
		return
	}
	skip, limit := 0, 20
	for _, p := range []struct {
		name string
		dst  *int
	}{{"skip", &skip}, {"limit", &limit}} {
		if v := q.Get(p.name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				writeValidation(w, p.name+" must be a number string")
				return
			}
			*p.dst = n
		}
	}
	if app, _, ok := strings.Cut(s.opts.ClientID, "-"); ok && q.Get("appId") != app {
		writeError(w, http.StatusBadRequest, "Invalid parameter: appId")
		return
	}
	companyID := q.Get("companyId")
	if g.UserType != UserTypeCompany || g.CompanyID != companyID {
		writeError(w, http.StatusForbidden, "The token does not have access to this company")
		return
	}
	onlyInstalled := q.Get("isInstalled") == "true"
	s.mu.Lock()
	var all []installedLocationJSON
	future := false
	if c := s.st.companies[companyID]; c != nil {
		future = c.InstallToFuture
		for _, id := range c.Locations {
			l := s.st.locations[id]
			if l == nil || (onlyInstalled && !l.AppInstalled) {
				continue
			}
			all = append(all, installedLocationJSON{ID: l.ID, Name: l.name(), Address: "", IsInstalled: l.AppInstalled})
		}
	}
	s.stats.installedLocationPages[companyID]++
	s.mu.Unlock()
	page := []installedLocationJSON{}
	if skip < len(all) {
		page = all[skip:min(skip+limit, len(all))]
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"locations":                page,
		"count":                    len(all),
		"installToFutureLocations": future,
	})
}
