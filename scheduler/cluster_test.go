package scheduler_test

import (
	"testing"

	"github.com/ghlsync/ghlsync/internal/testenv"
)

// On a Redis Cluster of three masters, through asynq's cluster client,
// three replicas still enqueue each slot exactly once.
func TestReplicasEnqueueEachSlotOnceOnRedisCluster(t *testing.T) {
	t.Parallel()
	testReplicasEnqueueEachSlotOnce(t, testenv.RedisCluster)
}
