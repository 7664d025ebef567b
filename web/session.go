package web

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Role is what a login may do on the admin pages.
type Role string

// Roles.
const (
	// RoleAdmin sees and changes everything.
	RoleAdmin Role = "admin"
	// RoleViewer sees every page and changes nothing.
	RoleViewer Role = "viewer"
)

// session is who a request that passed the admin guard comes from: its
// role, and an id that binds CSRF tokens and notices to that login.
type session struct {
	role Role
	id   string
}

type sessionKey struct{}

func withSession(ctx context.Context, s session) context.Context {
	return context.WithValue(ctx, sessionKey{}, s)
}

func sessionOf(ctx context.Context) (session, bool) {
	s, ok := ctx.Value(sessionKey{}).(session)
	return s, ok
}

// RoleOf is the role of the login a request passed the admin guard with;
// "" for a request the guard did not see.
func RoleOf(ctx context.Context) Role {
	s, _ := sessionOf(ctx)
	return s.role
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// csrfLife is how long a page's form tokens are accepted: longer than
// anyone leaves a page open before pressing its button; the pages that
// refresh themselves get new ones.
const csrfLife = 12 * time.Hour

// signer makes the tokens of the admin pages' forms and the notices shown
// after them, as HMACs under key bound to a session: a synchronizer token
// that needs no server-side state, so that every web replica given the
// same key accepts the tokens of the others. A page of another site can
// neither read one (the same-origin policy) nor make one (it has no key).
type signer struct {
	key []byte
	now func() time.Time
}

func (s signer) mac(parts ...string) []byte {
	m := hmac.New(sha256.New, s.key)
	for _, p := range parts {
		m.Write([]byte(strconv.Itoa(len(p))))
		m.Write([]byte{':'})
		m.Write([]byte(p))
	}
	return m.Sum(nil)
}

// token is a form token for sess, issued now: "UNIXSECONDS.MAC".
func (s signer) token(sess session) string {
	issued := strconv.FormatInt(s.now().Unix(), 10)
	return issued + "." + base64.RawURLEncoding.EncodeToString(s.mac("csrf", sess.id, issued))
}

// check reports whether tok is a token of sess issued within csrfLife.
func (s signer) check(sess session, tok string) bool {
	issued, sig, ok := strings.Cut(tok, ".")
	if !ok {
		return false
	}
	secs, err := strconv.ParseInt(issued, 10, 64)
	if err != nil {
		return false
	}
	age := s.now().Sub(time.Unix(secs, 0))
	// A minute into the future allows for replicas' clocks.
	if age > csrfLife || age < -time.Minute {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	return err == nil && hmac.Equal(got, s.mac("csrf", sess.id, issued))
}

// noticeCookie carries the one-line outcome of a form from the POST to the
// page it redirects to (POST, redirect, GET: reloading the page does not
// send the form again).
const noticeCookie = "ghlsync_notice"

// setNotice makes the next page sess loads show msg. secure marks the
// cookie for HTTPS only.
func (s signer) setNotice(w http.ResponseWriter, sess session, msg string, secure bool) {
	v := base64.RawURLEncoding.EncodeToString([]byte(msg)) + "." +
		base64.RawURLEncoding.EncodeToString(s.mac("notice", sess.id, msg))
	http.SetCookie(w, &http.Cookie{Name: noticeCookie, Value: v, Path: "/", MaxAge: 60, HttpOnly: true,
		Secure: secure, SameSite: http.SameSiteStrictMode})
}

// takeNotice returns the notice set for sess, and clears it; "" when there
// is none, or it is not one this key signed for sess.
func (s signer) takeNotice(w http.ResponseWriter, r *http.Request, sess session, secure bool) string {
	c, err := r.Cookie(noticeCookie)
	if err != nil {
		return ""
	}
	http.SetCookie(w, &http.Cookie{Name: noticeCookie, Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: secure, SameSite: http.SameSiteStrictMode})
	enc, sig, ok := strings.Cut(c.Value, ".")
	if !ok {
		return ""
	}
	msg, err1 := base64.RawURLEncoding.DecodeString(enc)
	got, err2 := base64.RawURLEncoding.DecodeString(sig)
	if err1 != nil || err2 != nil || !hmac.Equal(got, s.mac("notice", sess.id, string(msg))) {
		return ""
	}
	return string(msg)
}
