package config

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// MaxAlertSyncFailures bounds ALERT_SYNC_FAILURES: the metric of
// consecutive failures counts up to it.
const MaxAlertSyncFailures = 20

// loadAlerts reads the alert receivers and threshold into c.
func loadAlerts(c *Config, value func(string) string) error {
	var err error
	if c.AlertWebhookURLs, err = webhookURLs(VarAlertWebhook, value(VarAlertWebhook)); err != nil {
		return err
	}
	if c.AlertSlackURLs, err = webhookURLs(VarAlertSlack, value(VarAlertSlack)); err != nil {
		return err
	}
	v := value(VarAlertFailures)
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxAlertSyncFailures {
		return &Error{VarAlertFailures, fmt.Sprintf("%q is not a whole number from 1 to %d (default 3)", v, MaxAlertSyncFailures)}
	}
	c.AlertSyncFailures = n
	return nil
}

// webhookURLs splits a comma (or space) separated list of http(s) URLs.
// An error names the URL by its position only: the URL is a credential.
func webhookURLs(env, v string) ([]string, error) {
	var out []string
	for i, u := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
		if err := checkURL(env, u, "http", "https"); err != nil {
			return nil, &Error{env, fmt.Sprintf("URL %d: %s", i+1, err.(*Error).Msg)}
		}
		out = append(out, u)
	}
	return out, nil
}

// RedactWebhook is what may be shown of a webhook URL: its scheme and
// host. A webhook's path and query are its credential (a Slack incoming
// webhook URL is https://hooks.slack.com/services/T…/B…/SECRET), so
// unlike Redact it hides them whole, and any user info.
func RedactWebhook(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return redacted
	}
	out := u.Scheme + "://" + u.Host
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		out += "/" + redacted
	}
	return out
}
