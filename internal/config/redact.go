package config

import (
	"net/url"
	"regexp"
	"strings"
)

// redacted replaces a credential wherever one is shown.
const redacted = "xxxxx"

// secretKey reports whether a URL query or DSN key names a credential:
// password=, sslpassword=, sentinel_password=, pass=, pwd=, secret=,
// token=, access_token=, auth=, apikey=, …
func secretKey(k string) bool {
	k = strings.ToLower(k)
	for _, part := range []string{"pass", "pwd", "secret", "token", "apikey", "api_key"} {
		if strings.Contains(k, part) {
			return true
		}
	}
	return k == "auth" || k == "key"
}

// dsnSecret is a key=value pair of a DSN (PostgreSQL's "host=db
// password=x", also inside a URL's query or an error message) whose key
// names a credential; the value may be single-quoted.
var dsnSecret = regexp.MustCompile(`(?i)\b([a-z_]*(?:pass|pwd|secret|token|apikey|api_key)[a-z_]*|auth)(\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&;,"']+)`)

// urlInText is a URL inside free text, such as an error message.
var urlInText = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>]+`)

// Redact returns s, a URL or DSN from the configuration, with every
// credential in it replaced: a URL's password (user names stay, they
// help to tell configurations apart), query parameters that name one
// (password=, sslpassword=, pass=, token=, …), and key=value pairs of a
// DSN. Use it wherever a configured URL is logged or printed.
func Redact(s string) string {
	if s == "" {
		return s
	}
	if i := strings.Index(s, "://"); i > 0 {
		if u, err := url.Parse(s); err == nil {
			return redactURL(u)
		}
		// Unparsable: hide whatever sits between the scheme and an @.
		if j := strings.LastIndex(s, "@"); j > i {
			s = s[:i+3] + redacted + s[j:]
		}
	}
	return dsnSecret.ReplaceAllString(s, "${1}${2}"+redacted)
}

func redactURL(u *url.URL) string {
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), redacted)
		} else if strings.HasPrefix(u.Scheme, "redis") && u.User.Username() != "" {
			// redis://SECRET@host: a user part alone is Redis's password.
			u.User = url.User(redacted)
		}
	}
	if u.RawQuery != "" {
		parts := strings.Split(u.RawQuery, "&")
		for i, p := range parts {
			k, _, ok := strings.Cut(p, "=")
			if kk, err := url.QueryUnescape(k); err == nil {
				k = kk
			}
			if ok && secretKey(k) {
				parts[i] = k + "=" + redacted
			}
		}
		u.RawQuery = strings.Join(parts, "&")
	}
	if u.Fragment != "" {
		u.Fragment = dsnSecret.ReplaceAllString(u.Fragment, "${1}${2}"+redacted)
	}
	return u.String()
}

// RedactText returns free text (an error message, a log line) with every
// URL in it redacted as Redact does, and every key=value credential.
func RedactText(s string) string {
	s = urlInText.ReplaceAllStringFunc(s, Redact)
	return dsnSecret.ReplaceAllString(s, "${1}${2}"+redacted)
}

// HasCredential reports whether s, a URL or DSN, holds a credential that
// Redact would hide.
func HasCredential(s string) bool {
	return strings.Contains(Redact(s), redacted) && !strings.Contains(s, redacted)
}
