package ratelimit_test

import (
	"testing"

	"github.com/ghlsync/ghlsync/internal/testenv"
)

// On a Redis Cluster of three masters (each location's keys in one slot,
// by their hash tag) the limit holds across limiters, a pause stops
// grants, and GHL's headers tune the limiter.
func TestOnRedisCluster(t *testing.T) {
	t.Parallel()
	cluster := testenv.SharedRedisCluster(t)
	for _, tc := range []struct {
		name string
		test func(*testing.T, func(testing.TB) string)
	}{
		{"WaitGrantsUpToTheLimitThenWaitsForTheWindow", testWaitGrantsUpToTheLimitThenWaitsForTheWindow},
		{"LimitHoldsAcrossLimiters", testLimitHoldsAcrossLimiters},
		{"PauseStopsGrants", testPauseStopsGrants},
		{"ObserveSpendsQuotaSpentElsewhere", testObserveSpendsQuotaSpentElsewhere},
		{"ObserveAdoptsGHLsLimit", testObserveAdoptsGHLsLimit},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.test(t, cluster) })
	}
}
