package config

import (
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// ParseEd25519PublicKey reads GHL's webhook public key as an operator may
// paste it: a PEM "PUBLIC KEY" block (its line breaks may be written as \n,
// since env files hold one line), or base64 of the DER (the PEM's body on
// one line) or of the 32 raw bytes. An empty s is no key and no error.
func ParseEd25519PublicKey(s string) (ed25519.PublicKey, error) {
	der, err := keyBytes(s, "PUBLIC KEY")
	if der == nil || err != nil {
		return nil, err
	}
	if len(der) == ed25519.PublicKeySize {
		return ed25519.PublicKey(der), nil
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, errors.New("is neither 32 raw bytes nor a DER public key")
	}
	k, ok := pub.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("is a %T, not an Ed25519 public key", pub)
	}
	return k, nil
}

// ParseRSAPublicKey reads GHL's legacy RSA webhook public key: a PEM
// "PUBLIC KEY" or "RSA PUBLIC KEY" block, or base64 of its DER. An empty s
// is no key and no error.
func ParseRSAPublicKey(s string) (*rsa.PublicKey, error) {
	der, err := keyBytes(s, "PUBLIC KEY", "RSA PUBLIC KEY")
	if der == nil || err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS1PublicKey(der)
	if err != nil {
		pub, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			return nil, errors.New("is not a DER public key")
		}
		var ok bool
		if k, ok = pub.(*rsa.PublicKey); !ok {
			return nil, fmt.Errorf("is a %T, not an RSA public key", pub)
		}
	}
	if k.N.BitLen() < 2048 {
		return nil, fmt.Errorf("is a %d-bit RSA key; GHL's has at least 2048 bits", k.N.BitLen())
	}
	return k, nil
}

// keyBytes returns the DER (or raw) bytes of a PEM block of one of the
// given types or of base64 text; nil for an empty s.
func keyBytes(s string, pemTypes ...string) ([]byte, error) {
	s = strings.TrimSpace(strings.Trim(strings.TrimSpace(s), `"'`))
	if s == "" {
		return nil, nil
	}
	if strings.Contains(s, "-----BEGIN") {
		block, _ := pem.Decode([]byte(strings.ReplaceAll(s, `\n`, "\n")))
		if block == nil {
			return nil, errors.New("is not a valid PEM block")
		}
		for _, t := range pemTypes {
			if block.Type == t {
				return block.Bytes, nil
			}
		}
		return nil, fmt.Errorf("is a PEM %q block, want %q", block.Type, pemTypes[0])
	}
	s = strings.Join(strings.Fields(s), "")
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("is neither PEM nor base64")
}
