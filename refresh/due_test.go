package refresh_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/refresh"
	"github.com/ghlsync/ghlsync/store"
)

// readCountingStore counts the narrow reads before the lock
// (RefreshStates) and the full reads (CredentialsOf).
type readCountingStore struct {
	*store.Store
	states, full *atomic.Int64
}

func (s readCountingStore) RefreshStates(ctx context.Context, locs []string) (map[string]*store.Credential, error) {
	s.states.Add(1)
	return s.Store.RefreshStates(ctx, locs)
}

func (s readCountingStore) CredentialsOf(ctx context.Context, locs []string) (map[string]*store.Credential, error) {
	s.full.Add(1)
	return s.Store.CredentialsOf(ctx, locs)
}

// A request known to be due (a refresh-due fan-out's child) goes straight
// to the lock, without the narrow read: it refreshes a due token, and one
// that a refresh completed after it was made still answers it, decided
// under the lock, with no GHL call. A request not known to be due is
// answered by the narrow read as before.
func TestDueRequestSkipsTheReadBeforeTheLock(t *testing.T) {
	t.Parallel()
	r, b := setup(t, "due", "answered")
	var states, full atomic.Int64
	r.Store = readCountingStore{Store: b.store, states: &states, full: &full}
	ctx := context.Background()

	requested, err := refresh.SharedTime(ctx, r.Redis)
	if err != nil {
		t.Fatal(err)
	}
	// "answered" is refreshed after the request was made (on demand,
	// say), before the fan-out's child runs.
	if res, err := r.Refresh(ctx, refresh.Request{LocationID: "answered", Force: true}); err != nil || res.Outcome != refresh.Refreshed {
		t.Fatalf("refresh on demand = %+v, %v", res, err)
	}
	states.Store(0)
	full.Store(0)
	res, err := r.Refresh(ctx, refresh.Request{LocationID: "answered", RequestedAt: requested, Due: true})
	if err != nil || res.Outcome != refresh.Fresh {
		t.Fatalf("due request refreshed since = %+v, %v; want fresh", res, err)
	}
	if calls := b.fake.TokenCalls("answered"); calls != 1 {
		t.Errorf("%d token calls, want the one on demand", calls)
	}
	if states.Load() != 0 || full.Load() != 1 {
		t.Errorf("%d narrow reads and %d full reads, want none and one (under the lock)", states.Load(), full.Load())
	}

	res, err = r.Refresh(ctx, refresh.Request{LocationID: "due", RequestedAt: requested, Due: true})
	if err != nil || res.Outcome != refresh.Refreshed {
		t.Fatalf("due request = %+v, %v; want refreshed", res, err)
	}
	b.requireStoredCurrent(t, "due")
	if states.Load() != 0 {
		t.Errorf("%d narrow reads for due requests, want none", states.Load())
	}

	// The same answered request, not said to be due, ends at the narrow
	// read.
	full.Store(0)
	res, err = r.Refresh(ctx, refresh.Request{LocationID: "answered", RequestedAt: requested})
	if err != nil || res.Outcome != refresh.Fresh || states.Load() != 1 || full.Load() != 0 {
		t.Errorf("request = %+v, %v after %d narrow and %d full reads; want fresh after one narrow read", res, err, states.Load(), full.Load())
	}
}

// A refresh is stamped with when GHL answered on the shared clock: after
// the request was made by at least GHL's latency (not when the call was
// marked in flight), and not after Redis's time once it returns.
func TestRefreshedAtIsWhenGHLAnswered(t *testing.T) {
	t.Parallel()
	r, b := setup(t, "loc1")
	const latency = 300 * time.Millisecond
	b.fake.InjectFault(ghltest.Fault{Path: "/oauth/token", Latency: latency})
	ctx := context.Background()
	before, err := refresh.SharedTime(ctx, r.Redis)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := r.Refresh(ctx, refresh.Request{LocationID: "loc1", RequestedAt: before}); err != nil || res.Outcome != refresh.Refreshed {
		t.Fatalf("Refresh = %+v, %v", res, err)
	}
	after, err := refresh.SharedTime(ctx, r.Redis)
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.store.Credential(ctx, "loc1")
	if err != nil {
		t.Fatal(err)
	}
	if c.RefreshedAt == nil || c.RefreshedAt.Before(before.Add(latency)) || c.RefreshedAt.After(after) {
		t.Errorf("refreshed at %v, want in [%s, %s]", c.RefreshedAt, before.Add(latency), after)
	}
}
