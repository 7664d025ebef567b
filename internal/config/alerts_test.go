package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAlertSettings(t *testing.T) {
	t.Parallel()
	c, err := load(t, map[string]string{VarClientID: "id"})
	if err != nil {
		t.Fatal(err)
	}
	if c.AlertWebhookURLs != nil || c.AlertSlackURLs != nil || c.AlertSyncFailures != 3 {
		t.Errorf("defaults: webhooks %v, slack %v, failures %d", c.AlertWebhookURLs, c.AlertSlackURLs, c.AlertSyncFailures)
	}

	const secret = "T000/B000/XXXXsecretXXXX"
	c, err = load(t, map[string]string{VarClientID: "id",
		VarAlertWebhook:  "https://alerts.example.com/in?key=k1, http://10.0.0.5:9000/hook",
		VarAlertSlack:    "https://hooks.slack.com/services/" + secret,
		VarAlertFailures: "5"})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"https://alerts.example.com/in?key=k1", "http://10.0.0.5:9000/hook"}, c.AlertWebhookURLs); d != "" {
		t.Errorf("webhooks (-want +got):\n%s", d)
	}
	if len(c.AlertSlackURLs) != 1 || c.AlertSyncFailures != 5 {
		t.Errorf("slack %v, failures %d", c.AlertSlackURLs, c.AlertSyncFailures)
	}
	for _, shown := range []string{c.String(), fmt.Sprint(c.LogValue())} {
		if strings.Contains(shown, secret) || strings.Contains(shown, "k1") || !strings.Contains(shown, "alert_slack_webhooks=1") {
			t.Errorf("the configuration shows %s", shown)
		}
	}

	for _, tc := range []struct{ env map[string]string }{
		{map[string]string{VarAlertSlack: "hooks.slack.com/services/" + secret}},
		{map[string]string{VarAlertSlack: "ftp://hooks.slack.com/services/" + secret}},
		{map[string]string{VarAlertWebhook: "https://ok.example.com/a,https:///" + secret}},
		{map[string]string{VarAlertFailures: "0"}},
		{map[string]string{VarAlertFailures: "21"}},
		{map[string]string{VarAlertFailures: "three"}},
	} {
		tc.env[VarClientID] = "id"
		_, err := load(t, tc.env)
		var ce *Error
		if !errors.As(err, &ce) {
			t.Errorf("%v: error %v, want a *config.Error", tc.env, err)
			continue
		}
		for k := range tc.env {
			if k != VarClientID && ce.Var != k {
				t.Errorf("%v: error names %s", tc.env, ce.Var)
			}
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("the error shows the URL: %v", err)
		}
	}
}

func TestRedactWebhook(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://hooks.slack.com/services/T0/B0/secret": "https://hooks.slack.com/xxxxx",
		"https://user:pw@alerts.example.com:8443/":      "https://alerts.example.com:8443",
		"https://alerts.example.com?token=abc":          "https://alerts.example.com/xxxxx",
		"http://10.0.0.5:9000":                          "http://10.0.0.5:9000",
		"not a url %zz":                                 "xxxxx",
	} {
		if got := RedactWebhook(in); got != want {
			t.Errorf("RedactWebhook(%q) = %q, want %q", in, got, want)
		}
	}
}
