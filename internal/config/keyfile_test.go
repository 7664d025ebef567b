package config

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The key file is made once, mode 0600, with nothing left beside it; a
// second call reads the same key; an empty file (which a write cut short
// would have left before) is refused by name rather than taken for a key.
func TestEnsureKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "ghlsync.key")
	key, err := EnsureKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&Config{EncryptionKey: key}).Cipher(); err != nil {
		t.Fatalf("the new key does not make a cipher: %v", err)
	}
	again, err := EnsureKeyFile(path)
	if err != nil || again != key {
		t.Fatalf("second call: %q, %v; want the same key", again, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v; want mode 0600", fi, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("files beside the key: %v", entries)
	}

	empty := filepath.Join(dir, "empty.key")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureKeyFile(empty); err == nil || !strings.Contains(err.Error(), empty) {
		t.Fatalf("empty key file: %v, want an error naming it", err)
	}
}

// Default changes what applies when neither the flag nor the environment
// sets a variable, and nothing else.
func TestLoaderDefault(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"unset", nil, nil, "127.0.0.1:8080"},
		{"environment", map[string]string{VarWebAddr: ":9000"}, nil, ":9000"},
		{"flag", nil, []string{"--web-addr", "0.0.0.0:9001"}, "0.0.0.0:9001"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			l := NewLoader(fs, func(k string) string { return tc.env[k] }, ":9091")
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			l.Default(VarWebAddr, "127.0.0.1:8080")
			c, err := l.Load()
			if err != nil || c.WebAddr != tc.want {
				t.Fatalf("WebAddr %q, %v; want %q", c.WebAddr, err, tc.want)
			}
		})
	}
}
