package config_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/ghlsync/ghlsync/internal/config"
)

func load(t *testing.T, env map[string]string) (*config.Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	l := config.NewLoader(fs, func(k string) string { return env[k] }, "")
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	return l.Load()
}

func TestWebhookKeys(t *testing.T) {
	t.Parallel()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pemText := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaDER, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaDER}))
	rsaPKCS1 := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)}))

	for name, v := range map[string]string{
		"PEM":              pemText,
		"PEM on one line":  strings.ReplaceAll(pemText, "\n", `\n`),
		"base64 DER":       base64.StdEncoding.EncodeToString(der),
		"base64 raw bytes": base64.StdEncoding.EncodeToString(pub),
	} {
		c, err := load(t, map[string]string{config.VarWebhookKey: v})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !pub.Equal(c.WebhookKey) {
			t.Errorf("%s: parsed a different key", name)
		}
	}
	for name, v := range map[string]string{
		"PEM":        rsaPEM,
		"PKCS1 PEM":  rsaPKCS1,
		"base64 DER": base64.StdEncoding.EncodeToString(rsaDER),
	} {
		c, err := load(t, map[string]string{config.VarWebhookRSAKey: v})
		if err != nil {
			t.Errorf("RSA %s: %v", name, err)
			continue
		}
		if !rsaKey.PublicKey.Equal(c.WebhookRSAKey) {
			t.Errorf("RSA %s: parsed a different key", name)
		}
	}

	c, err := load(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.WebhookKey != nil || c.WebhookRSAKey != nil {
		t.Error("unset webhook keys parsed as keys")
	}
}

func TestWebhookKeysRefused(t *testing.T) {
	t.Parallel()
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallDER, err := x509.MarshalPKIXPublicKey(&small.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, env, value string }{
		{"not base64", config.VarWebhookKey, "not a key!"},
		{"wrong length", config.VarWebhookKey, base64.StdEncoding.EncodeToString([]byte("short"))},
		{"RSA as Ed25519", config.VarWebhookKey, base64.StdEncoding.EncodeToString(smallDER)},
		{"broken PEM", config.VarWebhookKey, "-----BEGIN PUBLIC KEY-----\nxx"},
		{"private key PEM", config.VarWebhookKey, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"},
		{"Ed25519 as RSA", config.VarWebhookRSAKey, base64.StdEncoding.EncodeToString(edDER)},
		{"small RSA", config.VarWebhookRSAKey, base64.StdEncoding.EncodeToString(smallDER)},
	} {
		_, err := load(t, map[string]string{tc.env: tc.value})
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Var != tc.env {
			t.Errorf("%s: err = %v, want a config.Error naming %s", tc.name, err, tc.env)
		}
	}
}
