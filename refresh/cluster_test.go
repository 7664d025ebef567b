package refresh_test

import (
	"testing"

	"github.com/ghlsync/ghlsync/internal/testenv"
)

// The refresh tests whose Redis commands differ on a Redis Cluster (no
// script or MULTI across hash slots, see cluster.go) pass on a cluster of
// three masters: single flight, taking over a dead worker's refresh, the
// pending slot, dropping a stale mark, and a lost holder leaving its
// successor's mark.
func TestOnRedisCluster(t *testing.T) {
	t.Parallel()
	cluster := testenv.SharedRedisCluster(t)
	for _, tc := range []struct {
		name string
		test func(*testing.T, func(testing.TB) string)
	}{
		{"SingleFlight", testSingleFlight},
		{"RecoverInterruptedRefresh", testRecoverInterruptedRefresh},
		{"PendingTokenIsStored", testPendingTokenIsStored},
		{"RecoverDropsStaleMarkOnlyWhenFree", testRecoverDropsStaleMarkOnlyWhenFree},
		{"RecoverTakesOverDeadWorkersLock", testRecoverTakesOverDeadWorkersLock},
		{"LostHolderLeavesNewHoldersMark", testLostHolderLeavesNewHoldersMark},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.test(t, cluster) })
	}
}
