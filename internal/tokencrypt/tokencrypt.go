// Package tokencrypt encrypts OAuth tokens at rest with AES-256-GCM.
//
// Every ciphertext names the key that sealed it (a short id derived from the
// key), so after a key rotation the old keys still decrypt what they sealed
// while new writes use the current key.
package tokencrypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

const prefix = "v1"

// ErrUnknownKey is returned for a ciphertext sealed by a key this Cipher does
// not hold.
var ErrUnknownKey = errors.New("tokencrypt: sealed with a key that is not configured (is TOKEN_ENCRYPTION_OLD_KEYS missing the previous key?)")

// ErrCorrupt is returned for a ciphertext that is not one of ours or was
// tampered with.
var ErrCorrupt = errors.New("tokencrypt: ciphertext is corrupt")

// Cipher seals with its current key and opens with any of its keys. It is
// safe for concurrent use.
type Cipher struct {
	current string
	aeads   map[string]cipher.AEAD
	// derive is the root of DeriveKey's keys: a MAC of the current key,
	// never the key itself, so no derived key reveals it.
	derive []byte
}

// ParseKey decodes a base64 key of exactly 32 bytes.
func ParseKey(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, errors.New("is not valid base64 (generate one with: openssl rand -base64 32)")
	}
	if len(b) != 32 {
		return nil, fmt.Errorf("decodes to %d bytes, want 32", len(b))
	}
	return b, nil
}

// New returns a Cipher that seals with key and also opens with oldKeys.
func New(key string, oldKeys ...string) (*Cipher, error) {
	c := &Cipher{aeads: map[string]cipher.AEAD{}}
	for i, k := range append([]string{key}, oldKeys...) {
		raw, err := ParseKey(k)
		if err != nil {
			return nil, fmt.Errorf("tokencrypt: key %d %v", i, err)
		}
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(raw)
		id := hex.EncodeToString(sum[:4])
		if i == 0 {
			c.current = id
			m := hmac.New(sha256.New, raw)
			m.Write([]byte("ghlsync tokencrypt: derived keys"))
			c.derive = m.Sum(nil)
		}
		c.aeads[id] = aead
	}
	return c, nil
}

// DeriveKey returns a 32-byte key for purpose (such as "web-csrf"),
// derived from the current key: every process given the same
// TOKEN_ENCRYPTION_KEY derives the same one, and a key of one purpose says
// nothing about another's, or about the token key.
func (c *Cipher) DeriveKey(purpose string) []byte {
	m := hmac.New(sha256.New, c.derive)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

// KeyID is the id of the key that seals.
func (c *Cipher) KeyID() string { return c.current }

// Seal encrypts plaintext; aad binds the ciphertext to its owner (a location
// id) so it cannot be moved to another row.
func (c *Cipher) Seal(plaintext, aad string) (string, error) {
	aead := c.aeads[c.current]
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	sealed := aead.Seal(nonce, nonce, []byte(plaintext), []byte(aad))
	return prefix + ":" + c.current + ":" + base64.RawStdEncoding.EncodeToString(sealed), nil
}

// Open decrypts what Seal returned for the same aad.
func (c *Cipher) Open(ciphertext, aad string) (string, error) {
	parts := strings.SplitN(ciphertext, ":", 3)
	if len(parts) != 3 || parts[0] != prefix {
		return "", ErrCorrupt
	}
	aead, ok := c.aeads[parts[1]]
	if !ok {
		return "", ErrUnknownKey
	}
	raw, err := base64.RawStdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) < aead.NonceSize() {
		return "", ErrCorrupt
	}
	pt, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte(aad))
	if err != nil {
		return "", ErrCorrupt
	}
	return string(pt), nil
}

// HasKey reports whether the key with this id (a ciphertext's, as the
// credentials table records it) is one the Cipher opens with.
func (c *Cipher) HasKey(id string) bool {
	_, ok := c.aeads[id]
	return ok
}
