package tasks_test

import (
	"testing"

	"github.com/ghlsync/ghlsync/internal/testenv"
)

// On a Redis Cluster of three masters (asynq's cluster client for the
// queue, the sync lock and the limiter's keys on their own slots) syncs
// stay idempotent when GHL's answers are lost, one sync of a location runs
// at a time, and a 429 pauses the location and puts the task back.
func TestSyncOnRedisCluster(t *testing.T) {
	t.Parallel()
	cluster := testenv.SharedRedisCluster(t)
	t.Run("LostAnswersCreateNothingTwice", func(t *testing.T) { testSyncLostAnswersCreateNothingTwice(t, cluster) })
	t.Run("SyncsOfALocationTakeTurns", func(t *testing.T) { testSyncsOfALocationTakeTurns(t, cluster) })
	t.Run("429PutsTheTaskBackWithoutFailure", func(t *testing.T) { testSync429PutsTheTaskBackWithoutFailure(t, cluster) })
}
