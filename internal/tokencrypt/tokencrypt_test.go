package tokencrypt

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func newKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func TestSealOpen(t *testing.T) {
	t.Parallel()
	c, err := New(newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	ct, err := c.Seal("rt-secret", "loc1")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(ct, "rt-secret") {
		t.Fatalf("ciphertext contains the plaintext: %s", ct)
	}
	got, err := c.Open(ct, "loc1")
	if err != nil || got != "rt-secret" {
		t.Fatalf("Open = %q, %v; want rt-secret", got, err)
	}
	if _, err := c.Open(ct, "loc2"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open with another location = %v, want ErrCorrupt", err)
	}
	if !strings.HasPrefix(ct, "v1:"+c.KeyID()+":") {
		t.Fatalf("ciphertext %q does not name its key %q", ct, c.KeyID())
	}
}

func TestRotation(t *testing.T) {
	t.Parallel()
	oldKey, newK := newKey(t), newKey(t)
	oldC, _ := New(oldKey)
	ct, _ := oldC.Seal("at-1", "loc")

	onlyNew, _ := New(newK)
	if _, err := onlyNew.Open(ct, "loc"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Open without the old key = %v, want ErrUnknownKey", err)
	}
	rotated, err := New(newK, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := rotated.Open(ct, "loc"); err != nil || got != "at-1" {
		t.Fatalf("Open with old key configured = %q, %v", got, err)
	}
	ct2, _ := rotated.Seal("at-2", "loc")
	if !strings.HasPrefix(ct2, "v1:"+onlyNew.KeyID()+":") {
		t.Fatal("new writes must use the current key")
	}
}

func TestBadKeys(t *testing.T) {
	t.Parallel()
	for _, k := range []string{"", "not base64!", base64.StdEncoding.EncodeToString([]byte("short"))} {
		if _, err := New(k); err == nil {
			t.Errorf("New(%q) succeeded", k)
		}
	}
}

// Two processes with the same current key derive the same key for a
// purpose; another purpose or another current key derives another, and no
// derived key is the token key.
func TestDeriveKey(t *testing.T) {
	t.Parallel()
	key, old := newKey(t), newKey(t)
	a, err := New(key, old)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(old, key)
	if err != nil {
		t.Fatal(err)
	}
	csrf := a.DeriveKey("web-csrf")
	if len(csrf) != 32 || string(csrf) != string(b.DeriveKey("web-csrf")) {
		t.Fatalf("same current key, different derived keys (%d bytes)", len(csrf))
	}
	raw, _ := ParseKey(key)
	for what, other := range map[string][]byte{
		"another purpose":     a.DeriveKey("web-flash"),
		"another current key": c.DeriveKey("web-csrf"),
		"the token key":       raw,
	} {
		if string(other) == string(csrf) {
			t.Errorf("the derived key equals %s's", what)
		}
	}
}
