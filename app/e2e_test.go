package app_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/scheduler"
	"github.com/ghlsync/ghlsync/store"
	"github.com/ghlsync/ghlsync/store/storetest"
)

// End to end with compressed time: tokens live 40 s, the refresh window is
// 15 s and token-refresh runs every 3 s. For two minutes, with the scheduler
// restarted twice, a client keeps calling GHL with whatever token the
// database holds: GHL never sees an expired token, and every location is
// refreshed over and over before its token expires.
func TestTokensStayAliveEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for two minutes")
	}
	t.Parallel()
	const lifetime, window, every, runFor = 40 * time.Second, 15 * time.Second, 3 * time.Second, 2 * time.Minute
	stack := storetest.NewStack(t, ghltest.Options{TokenLifetime: lifetime})
	locs := []string{"loc1", "loc2", "loc3"}
	for _, loc := range locs {
		stack.Fake.AddLocation(loc, "comp1")
		stack.Fake.AddCalendar(loc, "cal-"+loc, "Treatments")
		stack.Connect(t, loc, time.Now().Add(lifetime))
	}
	cfg, err := config.NewLoader(flag.NewFlagSet("w", flag.ContinueOnError), testenv.Getenv(stack.Env()), "").Load()
	if err != nil {
		t.Fatal(err)
	}
	// Below REFRESH_WINDOW's minimum, which is for real token lifetimes:
	// set past the loader, as compressed time needs.
	cfg.RefreshWindow = window
	cfg.MetricsAddr = ""
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := app.Open(ctx, cfg, app.NewLogger(io.Discard, cfg.LogLevel), true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	workerDone := make(chan error, 1)
	go func() { workerDone <- app.RunWorker(ctx, d, app.WorkerOptions{}) }()

	if _, err := scheduler.Setup(ctx, d.Store, app.DefaultSchedules, time.Now(), false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := scheduler.Set(ctx, d.Store, "token-refresh", scheduler.Spec{Every: every}, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"patient-sync", "appointment-sync"} {
		if _, _, err := scheduler.SetEnabled(ctx, d.Store, name, false); err != nil {
			t.Fatal(err)
		}
	}
	client := asynq.NewClientFromRedisClient(d.Redis)
	runScheduler := func() (stop func()) {
		sctx, scancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			(&scheduler.Scheduler{Store: d.Store, Enqueuer: client, Options: scheduler.Options{Logger: slog.New(slog.DiscardHandler)}}).Run(sctx)
		}()
		return func() { scancel(); <-done }
	}

	// The client: every 250 ms each location is called with the token the
	// database holds, as a sync would.
	api, err := ghl.NewClient(ghl.Config{BaseURL: stack.Fake.URL})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		failures []string
	)
	clientCtx, stopClient := context.WithCancel(ctx)
	clientDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-clientCtx.Done():
				return
			case <-tick.C:
			}
			for _, loc := range locs {
				c, err := stack.Store.Credential(clientCtx, loc)
				if err == nil {
					var toks store.Tokens
					if toks, err = stack.Store.Tokens(c); err == nil {
						_, _, err = api.Calendars.List(clientCtx, toks.AccessToken, loc)
					}
				}
				if err != nil && clientCtx.Err() == nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s at %s: %v", loc, time.Now().Format(time.StampMilli), err))
					mu.Unlock()
				}
			}
		}
	}()

	start := time.Now()
	for i := range 3 { // the scheduler runs three times: restarted twice
		stop := runScheduler()
		select {
		case <-time.After(time.Until(start.Add(runFor * time.Duration(i+1) / 3))):
		case err := <-workerDone:
			t.Fatalf("worker stopped: %v", err)
		}
		stop()
	}
	stopClient()
	<-clientDone
	cancel()
	if err := <-workerDone; err != nil {
		t.Fatal(err)
	}

	if len(failures) > 0 {
		t.Fatalf("%d GHL calls failed, first: %s", len(failures), failures[0])
	}
	if n := stack.Fake.ExpiredTokenCalls(); n != 0 {
		t.Fatalf("GHL saw %d calls with an expired token", n)
	}
	for _, loc := range locs {
		// 120 s of 40 s tokens refreshed 15 s before expiry: at least 4.
		if n := stack.Fake.Rotations(loc); n < 4 {
			t.Errorf("%s refreshed %d times, want at least 4", loc, n)
		}
		if n := stack.Fake.InvalidGrants(loc); n != 0 {
			t.Errorf("%s: %d invalid grants", loc, n)
		}
		if !stack.HoldsCurrent(t, loc) {
			t.Errorf("%s does not hold a current token", loc)
		}
	}
}
