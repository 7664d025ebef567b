package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

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

// enqueue sync-patients --since TIME puts a sync limited to the rows
// changed at or after TIME into the queue; a TIME that cannot be read, or
// one in the future, is one line on stderr, exit status 2, and nothing is
// enqueued.
func TestEnqueueSyncSince(t *testing.T) {
	t.Parallel()
	stack := storetest.NewStack(t, ghltest.Options{})
	env := stack.Env()
	insp := asynq.NewInspectorFromRedisClient(stack.Redis(t))
	for arg, want := range map[string]time.Time{
		"2026-11-30T09:00:00+01:00": time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC),
		"2026-11-30 09:30":          time.Date(2026, 11, 30, 9, 30, 0, 0, time.UTC),
		"2026-11-30":                time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC),
	} {
		code, stdout, stderr := enqueue(t, env, "sync-patients", "--location", "loc1", "--since", arg)
		if code != 0 {
			t.Fatalf("--since %s: exit %d: %s", arg, code, stderr)
		}
		var out struct {
			TaskID string `json:"task_id"`
			Queue  string `json:"queue"`
		}
		if err := json.Unmarshal([]byte(stdout), &out); err != nil {
			t.Fatalf("--since %s: %q: %v", arg, stdout, err)
		}
		info, err := insp.GetTaskInfo(out.Queue, out.TaskID)
		if err != nil {
			t.Fatal(err)
		}
		var p tasks.SyncPayload
		if err := json.Unmarshal(info.Payload, &p); err != nil || p.Since == nil || !p.Since.Equal(want) || p.Force || p.LocationID != "loc1" {
			t.Errorf("--since %s: payload %s (%v), want since %s", arg, info.Payload, err, want)
		}
		if ti, _ := tasks.Lookup(info.Type); ti.CheckPayload(info.Payload) != nil {
			t.Errorf("--since %s: the payload %s fails its own check", arg, info.Payload)
		}
	}
	before, err := insp.ListPendingTasks(tasks.QueueDefault)
	if err != nil {
		t.Fatal(err)
	}
	for _, arg := range []string{"yesterday", "30/11/2026", "2999-01-01", "-2h"} {
		code, stdout, stderr := enqueue(t, env, "sync-patients", "--since", arg)
		if code != 2 || stdout != "" || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, "--since") {
			t.Errorf("--since %s: exit %d, stdout %q, stderr %q; want exit 2 and one line naming --since", arg, code, stdout, stderr)
		}
	}
	if code, _, stderr := enqueue(t, env, "refresh", "--since", "2h"); code != 2 || !strings.Contains(stderr, "since") {
		t.Errorf("refresh --since: exit %d, %q; want 2", code, stderr)
	}
	if after, err := insp.ListPendingTasks(tasks.QueueDefault); err != nil || len(after) != len(before) {
		t.Errorf("bad --since values enqueued %d tasks (%v)", len(after)-len(before), err)
	}
}
