package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/tasks"
)

// enqueue sync-patients --full puts a sync that sends every record again
// (force) into the queue, for one location or every one, and --dry-run
// one that sends nothing; neither is a flag of refresh.
func TestEnqueueSyncFull(t *testing.T) {
	t.Parallel()
	stack := storetest.NewStack(t, ghltest.Options{})
	env := stack.Env()
	insp := asynq.NewInspectorFromRedisClient(stack.Redis(t))
	for _, args := range [][]string{
		{"sync-patients", "--location", "loc1", "--full"},
		{"sync-appointments", "--full"},
		{"sync-patients", "--location", "loc1", "--dry-run"},
	} {
		dry := args[len(args)-1] == "--dry-run"
		code, stdout, stderr := enqueue(t, env, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		var out struct{ TaskID, Queue string }
		if err := json.Unmarshal([]byte(stdout), &struct {
			TaskID *string `json:"task_id"`
			Queue  *string `json:"queue"`
		}{&out.TaskID, &out.Queue}); err != nil {
			t.Fatalf("%v: %q: %v", args, stdout, err)
		}
		info, err := insp.GetTaskInfo(out.Queue, out.TaskID)
		if err != nil {
			t.Fatal(err)
		}
		var p tasks.SyncPayload
		if err := json.Unmarshal(info.Payload, &p); err != nil || p.Force == dry || p.DryRun != dry {
			t.Errorf("%v: payload %s (%v)", args, info.Payload, err)
		}
		if ti, _ := tasks.Lookup(info.Type); ti.CheckPayload(info.Payload) != nil {
			t.Errorf("%v: the payload %s fails its own check", args, info.Payload)
		}
	}
	for _, flag := range []string{"--full", "--dry-run"} {
		if code, _, stderr := enqueue(t, env, "refresh", flag); code != 2 || !strings.Contains(stderr, flag[1:]) {
			t.Errorf("refresh %s: exit %d, %q; want 2", flag, code, stderr)
		}
	}
}
