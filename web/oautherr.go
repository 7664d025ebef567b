package web

import (
	"errors"
	"net/http"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/store"
)

// exchangeFailure is the callback's answer when GHL did not trade the
// code for tokens: what went wrong and what to do, in the operator's
// terms (the variables to check). GHL's own message is quoted; the
// client's errors hold no secret (ghl redacts them).
func exchangeFailure(err error) (status int, msg string) {
	again := "then start again at " + store.ConnectPath
	switch {
	case ghl.IsInvalidClient(err):
		return http.StatusBadGateway, "GHL refused the app's credentials (invalid_client: " + err.Error() + "): " +
			"check GHL_CLIENT_ID and GHL_CLIENT_SECRET against the app's client keys in GHL's marketplace (My Apps, the app, its Auth settings), " +
			"restart ghlsync, " + again
	case ghl.IsRedirectMismatch(err):
		return http.StatusBadGateway, "GHL refused the redirect URI (" + err.Error() + "): " +
			"GHL_REDIRECT_URI must be exactly one of the app's redirect URLs in GHL's marketplace (scheme, host, port and path), " +
			"and the same for the web process as for the consent; fix it, restart ghlsync, " + again
	case errors.Is(err, ghl.ErrInvalidGrant):
		return http.StatusBadRequest, "GHL refused the authorization code (" + err.Error() + "): " +
			"a code works once and for a few minutes (a reloaded or late callback page), " + again
	case ghl.Temporary(err):
		return http.StatusBadGateway, "GHL did not answer the code exchange (" + err.Error() + "): " +
			"wait a minute, " + again
	}
	return http.StatusBadGateway, "GHL did not accept the authorization (" + err.Error() + "): " + again
}
