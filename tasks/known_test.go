package tasks_test

import (
	"errors"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/tasks"
)

// Types lists every task type, each with the queue its own constructor
// enqueues it on (a schedule of the type goes there too), and Lookup
// knows no other.
func TestTypesAndTheirQueues(t *testing.T) {
	t.Parallel()
	client := asynq.NewClientFromRedisClient(testenv.RedisClient(t))
	build := map[string]func() (*asynq.Task, error){
		tasks.TypeTokenRefresh:    func() (*asynq.Task, error) { return tasks.NewRefreshTask("loc1", false, time.Now()) },
		tasks.TypeTokenRefreshDue: func() (*asynq.Task, error) { return tasks.NewRefreshDueTask(false, false, 0) },
		tasks.TypeTokenRefreshBatch: func() (*asynq.Task, error) {
			return tasks.NewRefreshBatchTask([]string{"loc1", "loc2"}, false, time.Now(), true)
		},
		tasks.TypePatientsSync:     func() (*asynq.Task, error) { return tasks.NewPatientsSyncTask("") },
		tasks.TypeAppointmentsSync: func() (*asynq.Task, error) { return tasks.NewAppointmentsSyncTask("") },
		tasks.TypeAlertsEvaluate:   tasks.NewAlertsEvaluateTask,
		tasks.TypeWebhookProcess:   func() (*asynq.Task, error) { return tasks.NewWebhookProcessTask(1), nil },
		tasks.TypeReconcile:        func() (*asynq.Task, error) { return tasks.NewReconcileTask("") },
	}
	if len(tasks.Types()) != len(build) {
		t.Fatalf("Types lists %d task types, want the %d there are", len(tasks.Types()), len(build))
	}
	for _, ti := range tasks.Types() {
		task, err := build[ti.Type]()
		if err != nil {
			t.Fatalf("%s: %v", ti.Type, err)
		}
		info, err := client.Enqueue(task)
		if err != nil {
			t.Fatal(err)
		}
		if info.Queue != ti.Queue || ti.About == "" {
			t.Errorf("%s: Types says queue %q, its constructor enqueues on %q (about %q)", ti.Type, ti.Queue, info.Queue, ti.About)
		}
		if got, ok := tasks.Lookup(ti.Type); !ok || got.Type != ti.Type {
			t.Errorf("Lookup(%s) = %+v, %t", ti.Type, got, ok)
		}
	}
	if _, ok := tasks.Lookup("ghl:patient:sync"); ok {
		t.Error("Lookup knows a type no handler has")
	}
}

// CheckPayload refuses what its task would not run as meant.
func TestCheckPayload(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		taskType, payload string
		ok                bool
	}{
		{tasks.TypePatientsSync, ``, true},
		{tasks.TypePatientsSync, `{}`, true},
		{tasks.TypePatientsSync, ` {"location_id":"loc1"} `, true},
		{tasks.TypePatientsSync, `{"locaton_id":"loc1"}`, false},
		{tasks.TypePatientsSync, `{"location_id":"loc1","after":"p-9"}`, false},
		{tasks.TypePatientsSync, `{"location_id":"loc1","force":true}`, true},
		{tasks.TypeAppointmentsSync, `{"force":true}`, true},
		{tasks.TypePatientsSync, `{"location_id":"loc1","dry_run":true}`, true},
		{tasks.TypePatientsSync, `{"force":"yes"}`, false},
		{tasks.TypePatientsSync, `{"location_id":"a\u0000b"}`, false},
		{tasks.TypePatientsSync, `{"location_id":"loc1"} {}`, false},
		{tasks.TypePatientsSync, `[1]`, false},
		{tasks.TypeAppointmentsSync, `not json`, false},
		{tasks.TypeTokenRefreshDue, ``, true},
		{tasks.TypeTokenRefreshBatch, `{"location_ids":["loc1","loc2"],"force":true}`, true},
		{tasks.TypeTokenRefreshBatch, `{"location_ids":[]}`, false},
		{tasks.TypeTokenRefreshBatch, `{"location_ids":["loc1","a\u0000b"]}`, false},
		{tasks.TypeTokenRefreshBatch, `{"location_id":"loc1"}`, false},
		{tasks.TypeTokenRefreshDue, `{"all":true,"force":true}`, true},
		{tasks.TypeTokenRefreshDue, `{"everything":true}`, false},
		{tasks.TypeTokenRefresh, ``, false},
		{tasks.TypeTokenRefresh, `{"force":true}`, false},
		{tasks.TypeTokenRefresh, `{"location_id":"loc1","force":true}`, true},
	} {
		ti, _ := tasks.Lookup(tc.taskType)
		if err := ti.CheckPayload([]byte(tc.payload)); (err == nil) != tc.ok {
			t.Errorf("%s %q: %v, want accepted %t", tc.taskType, tc.payload, err, tc.ok)
		}
	}
}

func TestIsFanOut(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		taskType, payload string
		want              bool
	}{
		{tasks.TypeTokenRefreshDue, `{"all":true}`, true},
		{tasks.TypeTokenRefresh, `{"location_id":"loc1"}`, false},
		{tasks.TypePatientsSync, ``, true},
		{tasks.TypePatientsSync, `{}`, true},
		{tasks.TypeAppointmentsSync, `{"location_id":"loc1","after":"a-1"}`, false},
	} {
		if got := tasks.IsFanOut(tc.taskType, []byte(tc.payload)); got != tc.want {
			t.Errorf("IsFanOut(%s, %s) = %t", tc.taskType, tc.payload, got)
		}
	}
}

// Find looks a task up by id alone, in whichever queue holds it.
func TestFind(t *testing.T) {
	t.Parallel()
	rc := testenv.RedisClient(t)
	client := asynq.NewClientFromRedisClient(rc)
	insp := asynq.NewInspectorFromRedisClient(rc)
	ids := map[string]string{}
	for _, q := range []string{tasks.QueueCritical, tasks.QueueDefault} {
		info, err := client.Enqueue(asynq.NewTask("test:find", nil, asynq.Queue(q)))
		if err != nil {
			t.Fatal(err)
		}
		ids[info.ID] = q
	}
	for id, q := range ids {
		info, err := tasks.Find(insp, id)
		if err != nil || info.Queue != q || info.ID != id {
			t.Errorf("Find(%s) = %+v, %v; want it in %s", id, info, err, q)
		}
	}
	if _, err := tasks.Find(insp, "no-such-task"); !errors.Is(err, asynq.ErrTaskNotFound) {
		t.Errorf("Find of an unknown id: %v", err)
	}
}
