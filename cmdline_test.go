package ghlsync_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ghlsync/ghlsync/internal/config"
)

// flagName is the flag of a configuration variable.
func flagName(v string) string { return strings.ToLower(strings.ReplaceAll(v, "_", "-")) }

// configFlags are the flags of the variables vars (every one when none),
// secrets left out.
func configFlags(vars ...string) []string {
	if len(vars) == 0 {
		vars = config.Vars()
	}
	var out []string
	for _, v := range vars {
		if !config.Secret(v) {
			out = append(out, flagName(v))
		}
	}
	return out
}

// commandLines are every binary's command lines, each with the flags its
// -h must list: its own and those of the configuration it reads, no more.
var commandLines = []struct {
	args  []string
	flags []string
}{
	{[]string{"enqueue"}, nil},
	{[]string{"enqueue", "refresh"}, append(configFlags(config.VarRedisURL), "location", "wait", "timeout")},
	{[]string{"enqueue", "sync-patients"}, append(configFlags(config.VarRedisURL), "location", "full", "dry-run", "since", "wait", "timeout")},
	{[]string{"enqueue", "sync-appointments"}, append(configFlags(config.VarRedisURL), "location", "full", "dry-run", "since", "wait", "timeout")},
	{[]string{"enqueue", "result"}, configFlags(config.VarRedisURL)},
	{[]string{"enqueue", "wait"}, append(configFlags(config.VarRedisURL), "timeout")},
	{[]string{"enqueue", "inspect"}, append(configFlags(config.VarRedisURL), "json")},
	{[]string{"enqueue", "task"}, configFlags(config.VarRedisURL)},
	{[]string{"enqueue", "queue"}, append(configFlags(config.VarRedisURL), "state")},
	{[]string{"scheduler"}, configFlags(config.VarDatabaseURL, config.VarRedisURL, config.VarMetricsAddr, config.VarLogLevel)},
	{[]string{"scheduler", "setup"}, append(configFlags(config.VarDatabaseURL), "reset")},
	{[]string{"scheduler", "list"}, configFlags(config.VarDatabaseURL)},
	{[]string{"scheduler", "set"}, append(configFlags(config.VarDatabaseURL), "every", "cron", "tz")},
	{[]string{"scheduler", "enable"}, configFlags(config.VarDatabaseURL)},
	{[]string{"scheduler", "disable"}, configFlags(config.VarDatabaseURL)},
	{[]string{"scheduler", "add"}, append(configFlags(config.VarDatabaseURL), "task", "payload", "every", "cron", "tz")},
	{[]string{"scheduler", "delete"}, configFlags(config.VarDatabaseURL)},
	{[]string{"scheduler", "run"}, configFlags(config.VarDatabaseURL, config.VarRedisURL)},
	{[]string{"scheduler", "settings"}, configFlags(config.VarDatabaseURL)},
	// The worker reads every variable: --standalone runs the web too.
	{[]string{"worker"}, append(configFlags(), "concurrency", "token-concurrency", "standalone", "sandbox", "redis-addr")},
	{[]string{"web"}, configFlags()},
	{[]string{"healthcheck"}, []string{"timeout"}},
}

// buildBinaries builds every command into a directory of the test's own,
// as the Dockerfile does (-s -w: no symbol table, which also links
// faster).
func buildBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("go", "build", "-ldflags=-s -w", "-o", dir+string(filepath.Separator), "./cmd/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./cmd/...: %v\n%s", err, out)
	}
	return dir
}

// runBinary runs a built binary with exactly env (nothing of this
// process's environment, which may hold real configuration).
func runBinary(t *testing.T, dir string, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(dir, args[0]), args[1:]...)
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%v: %v", args, err)
	}
	return code, out.String(), errOut.String()
}

var helpFlag = regexp.MustCompile(`(?m)^  --([a-z0-9-]+)`)

// Every binary has one command-line shape: -h exits 0 listing the flags
// of that command line alone, with defaults and environment variables,
// and no flag for a secret; a bad flag, a bad value, a missing or extra
// argument is one line on stderr that names it and points to -h, exit 2,
// and nothing runs.
func TestEveryCommandLine(t *testing.T) {
	t.Parallel()
	dir := buildBinaries(t)
	entries, err := os.ReadDir("cmd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !slices.ContainsFunc(commandLines, func(c struct {
			args  []string
			flags []string
		}) bool {
			return c.args[0] == e.Name()
		}) {
			t.Errorf("cmd/%s has no command line in the table", e.Name())
		}
	}
	var secretFlags []string
	for _, v := range config.Vars() {
		if config.Secret(v) {
			secretFlags = append(secretFlags, "--"+flagName(v))
		}
	}

	for _, c := range commandLines {
		name := strings.Join(c.args, " ")
		for _, h := range []string{"-h", "--help"} {
			code, stdout, stderr := runBinary(t, dir, nil, append(slices.Clone(c.args), h)...)
			help := stdout + stderr
			if code != 0 || !strings.Contains(help, "usage:") {
				t.Errorf("%s %s: exit %d, want 0 and a usage:\n%s", name, h, code, help)
				continue
			}
			var listed []string
			for _, m := range helpFlag.FindAllStringSubmatch(help, -1) {
				listed = append(listed, m[1])
			}
			want := slices.Clone(c.flags)
			slices.Sort(want)
			slices.Sort(listed)
			if !slices.Equal(want, listed) {
				t.Errorf("%s %s lists the flags %v, want %v:\n%s", name, h, listed, want, help)
			}
			for _, f := range secretFlags {
				if strings.Contains(help, f) {
					t.Errorf("%s %s offers the secret flag %s", name, h, f)
				}
			}
			for _, f := range c.flags {
				if slices.Contains(config.Vars(), strings.ToUpper(strings.ReplaceAll(f, "-", "_"))) &&
					!strings.Contains(help, "env "+strings.ToUpper(strings.ReplaceAll(f, "-", "_"))) {
					t.Errorf("%s %s does not name the variable of --%s", name, h, f)
				}
			}
		}

		bad := [][]string{{"--bogus"}, {"--bogus=1"}}
		for _, f := range secretFlags {
			bad = append(bad, []string{f, "x"})
		}
		for _, extra := range bad {
			args := append(slices.Clone(c.args), extra...)
			code, stdout, stderr := runBinary(t, dir, nil, args...)
			flagged := strings.TrimLeft(strings.SplitN(extra[0], "=", 2)[0], "-")
			if code != 2 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") ||
				!strings.Contains(stderr, "-"+flagged) || !strings.Contains(stderr, " -h)") {
				t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 and one line naming -%s and pointing to -h", args, code, stdout, stderr, flagged)
			}
		}
	}

	// Bad values and arguments, each found before anything is opened:
	// nothing listens at the Redis and database named.
	env := []string{
		"REDIS_URL=redis://127.0.0.1:1/0", "DATABASE_URL=sqlite://" + filepath.Join(t.TempDir(), "no", "such", "dir", "x.db"),
		"GHL_CLIENT_ID=id", "GHL_CLIENT_SECRET=s3cr3t-value", "TOKEN_ENCRYPTION_KEY=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
	}
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"enqueue", "refresh", "--timeout", "soon"}, "-timeout"},
		{[]string{"enqueue", "refresh", "--wait=maybe"}, "-wait"},
		{[]string{"enqueue", "wait"}, "TASK_ID"},
		{[]string{"enqueue", "result", "a", "b"}, `"b"`},
		{[]string{"enqueue", "frobnicate"}, `"frobnicate"`},
		{[]string{"enqueue", "refresh", "--redis-url", "http://x"}, "REDIS_URL"},
		{[]string{"enqueue", "refresh", "--redis-url", "redis://:pw-in-ps@x:1/0"}, "--redis-url"},
		{[]string{"scheduler", "--metrics-addr", "nonsense"}, "METRICS_ADDR"},
		{[]string{"scheduler", "set", "token-refresh", "--every", "often"}, "--every"},
		{[]string{"scheduler", "set", "token-refresh", "--reset"}, "-reset"},
		{[]string{"scheduler", "add", "x", "--task", "ghl:nope", "--every", "1h"}, "--task"},
		{[]string{"scheduler", "frobnicate"}, `"frobnicate"`},
		{[]string{"worker", "--concurrency", "many"}, "-concurrency"},
		{[]string{"worker", "--concurrency", "0"}, "--concurrency"},
		{[]string{"worker", "--refresh-window", "1ns"}, "REFRESH_WINDOW"},
		{[]string{"worker", "extra"}, `"extra"`},
		{[]string{"web", "--web-addr", "nonsense"}, "WEB_ADDR"},
		{[]string{"healthcheck"}, "URL"},
		{[]string{"healthcheck", "--timeout", "0s", "http://127.0.0.1:1/"}, "--timeout"},
		{[]string{"healthcheck", "http://127.0.0.1:1/", "http://127.0.0.1:2/"}, `"http://127.0.0.1:2/"`},
	} {
		code, stdout, stderr := runBinary(t, dir, env, tc.args...)
		if code != 2 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.says) ||
			!strings.Contains(stderr, " -h)") || strings.Contains(stderr, "s3cr3t-value") || strings.Contains(stderr, "pw-in-ps") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 and one line naming %s, pointing to -h", tc.args, code, stdout, stderr, tc.says)
		}
	}
}
