package cli

import (
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ghlsync/ghlsync/internal/config"
)

func TestParseArgs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		pos  []string
		wait bool
	}{
		{[]string{"set", "name", "--wait"}, []string{"set", "name"}, true},
		{[]string{"--wait", "a", "--timeout", "1s", "b"}, []string{"a", "b"}, true},
		{[]string{"a", "--", "--wait", "-x"}, []string{"a", "--wait", "-x"}, false},
		{nil, nil, false},
	} {
		fs := NewFlagSet("test")
		wait := fs.Bool("wait", false, "")
		fs.Duration("timeout", time.Second, "")
		pos, err := ParseArgs(fs, tc.args)
		if err != nil || !cmp.Equal(pos, tc.pos) || *wait != tc.wait {
			t.Errorf("ParseArgs(%q) = %q, %v, wait %t; want %q, wait %t", tc.args, pos, err, *wait, tc.pos, tc.wait)
		}
	}
	for _, args := range [][]string{{"-h"}, {"a", "--help"}} {
		if _, err := ParseArgs(NewFlagSet("test"), args); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("ParseArgs(%q): %v, want flag.ErrHelp", args, err)
		}
	}
	for _, args := range [][]string{{"--bogus"}, {"a", "--timeout", "soon"}} {
		fs := NewFlagSet("enqueue wait")
		fs.Duration("timeout", time.Second, "")
		_, err := ParseArgs(fs, args)
		var ue *UsageError
		if !errors.As(err, &ue) || strings.Contains(err.Error(), "\n") || !strings.HasSuffix(err.Error(), "(see enqueue wait -h)") {
			t.Errorf("ParseArgs(%q): %v, want one line pointing to -h", args, err)
		}
	}
}

func TestSplitCommand(t *testing.T) {
	t.Parallel()
	fs := NewFlagSet("x")
	fs.String("database-url", "", "")
	fs.Bool("wait", false, "")
	for _, tc := range []struct {
		args []string
		cmd  string
		rest []string
	}{
		{[]string{"--database-url", "sqlite://x", "list"}, "list", []string{"--database-url", "sqlite://x"}},
		{[]string{"--database-url=sqlite://x", "--wait", "set", "n"}, "set", []string{"--database-url=sqlite://x", "--wait", "n"}},
		{[]string{"--wait"}, "", []string{"--wait"}},
		{[]string{"--", "run", "a"}, "run", []string{"--", "a"}},
		{[]string{"--bogus", "list"}, "", []string{"--bogus", "list"}},
		{[]string{"-h", "list"}, "list", []string{"-h"}},
	} {
		cmd, rest := SplitCommand(tc.args, fs)
		if cmd != tc.cmd || !cmp.Equal(rest, tc.rest) {
			t.Errorf("SplitCommand(%q) = %q, %q; want %q, %q", tc.args, cmd, rest, tc.cmd, tc.rest)
		}
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	fs := NewFlagSet("enqueue wait")
	fs.Duration("timeout", 10*time.Minute, "how long to wait")
	fs.Bool("json", false, "print JSON")
	config.NewLoader(fs, func(string) string { return "" }, "", config.VarRedisURL)
	var b strings.Builder
	Help(&b, "usage: enqueue wait TASK_ID", fs, []string{config.VarClientSecret})
	want := `usage: enqueue wait TASK_ID

flags:
  --json
        print JSON
  --redis-url string
        redis://, rediss://, redis-sentinel:// or redis-cluster:// URL (env REDIS_URL, default redis://127.0.0.1:6379/0)
  --timeout duration
        how long to wait (default 10m0s)

secrets, from the environment only (or NAME_FILE, a file holding the value):
  GHL_CLIENT_SECRET
`
	if d := cmp.Diff(want, b.String()); d != "" {
		t.Errorf("Help (-want +got):\n%s", d)
	}
}

func TestExit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		code int
		say  string
	}{
		{nil, ExitOK, ""},
		{flag.ErrHelp, ExitOK, ""},
		{&config.Error{Var: "REDIS_URL", Msg: "is not a URL"}, ExitUsage, "scheduler list: REDIS_URL: is not a URL (see scheduler list -h)\n"},
		{UsageHelp("scheduler list", "unexpected argument %q", "x"), ExitUsage, "scheduler list: unexpected argument \"x\" (see scheduler list -h)\n"},
		{errors.New("dial redis://:pw-1@cache:6379/0: refused"), ExitFailure, "scheduler list: dial redis://:xxxxx@cache:6379/0: refused\n"},
		{errors.Join(errors.New("a"), errors.New("b")), ExitFailure, "scheduler list: a\nscheduler list: b\n"},
	} {
		var b strings.Builder
		if code := Exit(&b, "scheduler list", tc.err); code != tc.code || b.String() != tc.say {
			t.Errorf("Exit(%v) = %d, printed %q; want %d, %q", tc.err, code, b.String(), tc.code, tc.say)
		}
	}
}

func TestWantArgs(t *testing.T) {
	t.Parallel()
	fs := NewFlagSet("enqueue task")
	for _, tc := range []struct {
		pos []string
		say string
	}{
		{[]string{"retry", "id"}, ""},
		{[]string{"retry"}, "needs TASK_ID (see enqueue task -h)"},
		{nil, "needs ACTION TASK_ID (see enqueue task -h)"},
		{[]string{"retry", "id", "more"}, `unexpected argument "more" (see enqueue task -h)`},
	} {
		got := ""
		if err := WantArgs(fs, tc.pos, "ACTION", "TASK_ID"); err != nil {
			got = err.Error()
		}
		if got != tc.say {
			t.Errorf("WantArgs(%q) = %q, want %q", tc.pos, got, tc.say)
		}
	}
}
