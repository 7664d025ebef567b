package main

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/store/storetest"
)

func TestMain(m *testing.M) {
	testenv.RunProcess("web", func() int {
		ctx, stop := app.SignalContext(context.Background())
		defer stop()
		return run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	})
	os.Exit(m.Run())
}

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// No binary's log holds a password from any URL it was given: the web
// process at debug level, through a whole connect, the admin guard with a
// wrong and the right password, and its shutdown.
func TestNoPasswordInLogs(t *testing.T) {
	t.Parallel()
	stack := storetest.NewStack(t, ghltest.Options{})
	stack.Fake.AddLocation("loc1", "comp1")
	addr := testenv.FreeAddr(t)
	env, secrets := stack.SecretEnv(t, "WEB_ADDR", addr)
	p := testenv.StartProcess(t, "web", env)
	base := "http://" + addr
	testenv.Eventually(t, 30*time.Second, "the web process to answer", func() bool {
		resp, err := noRedirect.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	resp, err := noRedirect.Get(base + "/api/auth/connect")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	consent, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("connect: %d %v", resp.StatusCode, err)
	}
	resp, err = noRedirect.Get(base + "/api/auth/callback?" + url.Values{
		"code": {stack.Fake.AuthorizeCode("Location", "loc1")}, "state": {consent.Query().Get("state")}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !stack.HoldsCurrent(t, "loc1") {
		t.Fatalf("callback: %d", resp.StatusCode)
	}
	for pw, want := range map[string]int{"wrong": http.StatusUnauthorized, secrets["admin password"]: http.StatusOK} {
		req, _ := http.NewRequest(http.MethodGet, base+"/api/locations", nil)
		req.SetBasicAuth("admin", pw)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("status page with password %q: %d, want %d", pw, resp.StatusCode, want)
		}
	}
	if code := p.Stop(15 * time.Second); code != 0 {
		t.Fatalf("web exit status %d", code)
	}
	outputs := map[string]string{"web log": p.Output.String()}
	if !strings.Contains(outputs["web log"], "GHL connected") {
		t.Fatalf("the web log does not show the connect:\n%s", outputs["web log"])
	}

	// A start that fails on the address: one line naming WEB_ADDR.
	bad := map[string]string{}
	for k, v := range env {
		bad[k] = v
	}
	bad["WEB_ADDR"] = "localhost"
	var stderr bytes.Buffer
	if code := run(context.Background(), nil, testenv.Getenv(bad), &stderr); code != 2 || !strings.Contains(stderr.String(), "WEB_ADDR") {
		t.Fatalf("bad WEB_ADDR: exit %d, %q", code, stderr.String())
	}
	outputs["failing start"] = stderr.String()
	storetest.RequireNoSecret(t, secrets, outputs)
}
