package sandbox

import (
	"crypto/ed25519"
	"crypto/rand"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
)

// SendWebhooks makes the fake GHL send its contact and appointment
// webhooks to url, signed with a key made here, and returns the key's
// public half for the web process to verify them with: the sandbox's
// inbox (ghl_changes) fills as its contacts and appointments change.
func (s *Server) SendWebhooks(url string) (ed25519.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	s.Fake.SetWebhooks(ghltest.WebhookOptions{URL: url, Key: priv})
	return pub, nil
}
