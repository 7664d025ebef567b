package alert

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/store"
)

// Receiver types.
const (
	// TypeWebhook receives a Payload as JSON.
	TypeWebhook = "webhook"
	// TypeSlack is a Slack-compatible incoming webhook: it receives
	// {"text": …}.
	TypeSlack = "slack"
)

// Receiver is a URL that alerts are posted to. The URL is a credential (a
// Slack webhook URL is all it takes to post to the channel), so a Receiver
// prints, logs and stores only its Name and Key.
type Receiver struct {
	Type string
	url  string
}

// NewReceivers returns the receivers of the configured URLs:
// ALERT_WEBHOOK_URL's and ALERT_SLACK_WEBHOOK_URL's, each once.
func NewReceivers(webhooks, slack []string) []Receiver {
	var out []Receiver
	seen := map[string]bool{}
	add := func(typ string, urls []string) {
		for _, u := range urls {
			r := Receiver{Type: typ, url: u}
			if !seen[r.Key()] {
				seen[r.Key()] = true
				out = append(out, r)
			}
		}
	}
	add(TypeWebhook, webhooks)
	add(TypeSlack, slack)
	return out
}

// Key identifies the receiver in the alert_deliveries table, the same in
// every process configured with the same URL: its type and a hash of the
// URL.
func (r Receiver) Key() string {
	sum := sha256.Sum256([]byte(r.url))
	return r.Type + ":" + hex.EncodeToString(sum[:6])
}

// Name is what may be shown of the receiver: its type, and its URL's
// scheme and host.
func (r Receiver) Name() string { return r.Type + " " + config.RedactWebhook(r.url) }

func (r Receiver) String() string   { return r.Name() }
func (r Receiver) GoString() string { return "alert.Receiver{" + r.Name() + "}" }

// LogValue keeps the URL out of structured logs.
func (r Receiver) LogValue() slog.Value { return slog.StringValue(r.Name()) }

// receiverType is the type of the receiver whose Key is key.
func receiverType(key string) string {
	t, _, _ := strings.Cut(key, ":")
	return t
}

// Payload is the JSON body a generic webhook receives, firing and
// resolved. The README's "Alerts" section documents it.
type Payload struct {
	// ID is the same on every attempt of one notification: a receiver
	// that sees it twice (an attempt whose answer was lost) drops the
	// second. It is also sent as the Idempotency-Key header.
	ID string `json:"id"`
	// Event is "firing" or "resolved".
	Event      string            `json:"event"`
	Kind       string            `json:"kind"`
	Subject    string            `json:"subject"`
	Episode    int64             `json:"episode"`
	Labels     map[string]string `json:"labels"`
	Summary    string            `json:"summary"`
	Detail     string            `json:"detail"`
	StartedAt  time.Time         `json:"started_at"`
	ResolvedAt *time.Time        `json:"resolved_at"`
	// URL is the web's alerts page, when WEB_PUBLIC_URL is known.
	URL string `json:"url,omitempty"`
}

// NewPayload is the payload of a's notification event.
func NewPayload(a store.Alert, event, publicURL string) Payload {
	p := Payload{
		ID: fmt.Sprintf("ghlsync-alert-%d-%s", a.ID, event), Event: event,
		Kind: a.Kind, Subject: a.Subject, Episode: a.Episode, Labels: map[string]string{},
		Summary: a.Summary, Detail: a.Detail, StartedAt: a.StartedAt.UTC(),
	}
	if a.ResolvedAt != nil && event == store.AlertResolved {
		t := a.ResolvedAt.UTC()
		p.ResolvedAt = &t
	}
	if a.Labels != "" {
		// Written by Evaluate from a map; unreadable would be a bug, and
		// the alert still goes without its labels.
		json.Unmarshal([]byte(a.Labels), &p.Labels)
	}
	if publicURL != "" {
		p.URL = strings.TrimRight(publicURL, "/") + store.AlertsPath
	}
	return p
}

// SlackText is the text of a's notification event as a Slack message.
func SlackText(p Payload) string {
	var b strings.Builder
	if p.Event == store.AlertResolved {
		b.WriteString("*[RESOLVED]* ")
	} else {
		b.WriteString("*[FIRING]* ")
	}
	b.WriteString(slackEscape(p.Summary))
	if p.ResolvedAt != nil {
		fmt.Fprintf(&b, " (after %s)", human(p.ResolvedAt.Sub(p.StartedAt)))
	} else if p.Detail != "" {
		b.WriteString("\n" + slackEscape(p.Detail))
	}
	if p.URL != "" {
		fmt.Fprintf(&b, "\n<%s|ghlsync alerts>", p.URL)
	}
	return b.String()
}

// slackEscape escapes what Slack's message format reads as markup.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func (r Receiver) body(a store.Alert, event, publicURL string) ([]byte, Payload, error) {
	p := NewPayload(a, event, publicURL)
	if r.Type == TypeSlack {
		b, err := json.Marshal(map[string]string{"text": SlackText(p)})
		return b, p, err
	}
	b, err := json.Marshal(p)
	return b, p, err
}

// send posts a's notification event to r; nil when r answered 2xx. The
// error never holds r's URL.
func (r Receiver) send(ctx context.Context, client *http.Client, a store.Alert, event, publicURL string) error {
	body, p, err := r.body(a, event, publicURL)
	if err != nil {
		return fmt.Errorf("%s: encoding the alert: %w", r.Name(), err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(body))
	if err != nil {
		return r.scrub(fmt.Errorf("%s: %w", r.Name(), err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ghlsync")
	req.Header.Set("Idempotency-Key", p.ID)
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = fmt.Errorf("%s %s: %w", ue.Op, r.Name(), ue.Err)
		}
		return r.scrub(err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		msg := fmt.Sprintf("%s answered %s", r.Name(), resp.Status)
		if s := printable(string(snippet)); s != "" {
			msg += ": " + s
		}
		return r.scrub(errors.New(msg))
	}
	return nil
}

// scrub removes r's URL, and its path, from err's text: an error of the
// HTTP stack may quote the request's URL anywhere.
func (r Receiver) scrub(err error) error {
	msg := err.Error()
	if u, perr := url.Parse(r.url); perr == nil {
		pathAndQuery := strings.TrimPrefix(r.url, u.Scheme+"://"+u.Host)
		if strings.Contains(msg, r.url) || len(pathAndQuery) > 1 && strings.Contains(msg, pathAndQuery) {
			msg = strings.ReplaceAll(msg, r.url, r.Name())
			if len(pathAndQuery) > 1 {
				msg = strings.ReplaceAll(msg, pathAndQuery, "/xxxxx")
			}
			return errors.New(msg)
		}
	}
	return err
}

// printable is s without control characters, trimmed.
func printable(s string) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return ' '
		}
		return r
	}, s))
}
