package web_test

import (
	"testing"

	"github.com/ghlsync/ghlsync/internal/testenv"
)

// On a Redis Cluster of three masters, where a kept connection and the
// list of them hash to different slots, a connection kept while the
// database was down is still written once it is back, and then dropped.
func TestPendingConnectionsOnRedisCluster(t *testing.T) {
	t.Parallel()
	cluster := testenv.SharedRedisCluster(t)
	t.Run("CallbackDatabaseDownConnectsLater", func(t *testing.T) { testCallbackDatabaseDownConnectsLater(t, cluster) })
	t.Run("CallbackDatabaseDownConnectsCompanyLater", func(t *testing.T) { testCallbackDatabaseDownConnectsCompanyLater(t, cluster) })
}
