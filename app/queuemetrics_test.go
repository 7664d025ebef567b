package app_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/metrics"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/store/storetest"
)

// schedulerProc is a scheduler process (app.RunScheduler) on stack, its
// /metrics on a port of its own.
type schedulerProc struct {
	addr string
	stop context.CancelFunc
	done chan error
}

func startScheduler(t *testing.T, stack *storetest.Stack) *schedulerProc {
	t.Helper()
	s := &schedulerProc{addr: testenv.FreeAddr(t), done: make(chan error, 1)}
	cfg, err := config.NewLoader(flag.NewFlagSet("scheduler", flag.ContinueOnError),
		testenv.Getenv(stack.Env(config.VarMetricsAddr, s.addr)), "").Load()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	go func() { s.done <- app.RunScheduler(ctx, cfg, app.NewLogger(&testenv.Buffer{}, cfg.LogLevel)) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-s.done:
			if err != nil {
				t.Errorf("RunScheduler: %v", err)
			}
			s.done <- nil
		case <-time.After(15 * time.Second):
			t.Error("RunScheduler did not stop after its context ended")
		}
	})
	testenv.Eventually(t, 10*time.Second, "the scheduler to serve /metrics", func() bool {
		_, err := s.scrape()
		return err == nil
	})
	return s
}

// scrape reads the scheduler's /metrics.
func (s *schedulerProc) scrape() (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get("http://" + s.addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// exports reports whether the scheduler's /metrics has the queue metrics.
func (s *schedulerProc) exports(t *testing.T) bool {
	t.Helper()
	fams, err := s.scrape()
	if err != nil {
		t.Fatal(err)
	}
	return fams["ghlsync_queue_tasks"] != nil
}

// value is the value of family name's sample whose labels are labels.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no %s in /metrics", name)
	}
next:
	for _, m := range f.Metric {
		if len(m.Label) != len(labels) {
			continue
		}
		for _, l := range m.Label {
			if labels[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		}
	}
	t.Fatalf("no %s%v in /metrics", name, labels)
	return 0
}

// seedQueue puts tasks of every state, a different number of each, in
// queue q with a real asynq client and server: one active (its handler
// blocks), two retry (failed once, retried in an hour), four archived
// (failed, no retries), five completed (kept an hour), then, with the
// queue paused so nothing takes them, three pending and six scheduled an
// hour ahead.
func seedQueue(t *testing.T, redisURL, q string) *asynq.Inspector {
	t.Helper()
	opt, err := asynq.ParseRedisURI(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClient(opt)
	t.Cleanup(func() { client.Close() })
	insp := asynq.NewInspector(opt)
	t.Cleanup(func() { insp.Close() })

	release := make(chan struct{})
	mux := asynq.NewServeMux()
	mux.HandleFunc("test:block", func(ctx context.Context, _ *asynq.Task) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	mux.HandleFunc("test:fail", func(context.Context, *asynq.Task) error { return errors.New("failed on purpose") })
	mux.HandleFunc("test:ok", func(context.Context, *asynq.Task) error { return nil })
	srv := asynq.NewServer(opt, asynq.Config{
		Concurrency: 4, Queues: map[string]int{q: 1},
		RetryDelayFunc:    func(int, error, *asynq.Task) time.Duration { return time.Hour },
		TaskCheckInterval: 10 * time.Millisecond, ShutdownTimeout: time.Second,
		LogLevel: asynq.FatalLevel,
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(release); srv.Shutdown() })
	enqueue := func(n int, typ string, opts ...asynq.Option) {
		for range n {
			if _, err := client.Enqueue(asynq.NewTask(typ, nil), append(opts, asynq.Queue(q))...); err != nil {
				t.Fatal(err)
			}
		}
	}
	enqueue(1, "test:block")
	enqueue(2, "test:fail", asynq.MaxRetry(1))
	enqueue(4, "test:fail", asynq.MaxRetry(0))
	enqueue(5, "test:ok", asynq.Retention(time.Hour))
	testenv.Eventually(t, 10*time.Second, "the server to leave tasks in each state", func() bool {
		info, err := insp.GetQueueInfo(q)
		return err == nil && info.Active == 1 && info.Retry == 2 && info.Archived == 4 && info.Completed == 5
	})
	if err := insp.PauseQueue(q); err != nil {
		t.Fatal(err)
	}
	enqueue(3, "test:ok")
	enqueue(6, "test:ok", asynq.ProcessIn(time.Hour))
	return insp
}

// The queue metrics a scheduler exports are asynq's Inspector's numbers
// for the queue, state by state.
func TestQueueMetricsMatchInspector(t *testing.T) {
	t.Parallel()
	stack := storetest.NewStack(t, ghltest.Options{})
	const q = "seeded"
	insp := seedQueue(t, stack.RedisURL, q)
	s := startScheduler(t, stack)
	testenv.Eventually(t, 5*time.Second, "the only scheduler to export the queue metrics", func() bool { return s.exports(t) })

	before, err := insp.GetQueueInfo(q)
	if err != nil {
		t.Fatal(err)
	}
	fams, err := s.scrape()
	if err != nil {
		t.Fatal(err)
	}
	after, err := insp.GetQueueInfo(q)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"pending": 3, "active": 1, "scheduled": 6, "retry": 2, "archived": 4, "completed": 5}
	for i, n := range []int{before.Pending, before.Active, before.Scheduled, before.Retry, before.Archived, before.Completed} {
		state := metrics.QueueStates[i]
		if n != want[state] {
			t.Fatalf("the seeded queue has %d %s, want %d (seeding went wrong)", n, state, want[state])
		}
		if got := value(t, fams, "ghlsync_queue_tasks", map[string]string{"queue": q, "state": state}); got != float64(n) {
			t.Errorf("ghlsync_queue_tasks{state=%q} = %v, the Inspector says %d", state, got, n)
		}
	}
	for name, n := range map[string]int{
		"ghlsync_queue_processed_today": before.Processed, "ghlsync_queue_failed_today": before.Failed,
		"ghlsync_queue_processed_total": before.ProcessedTotal, "ghlsync_queue_failed_total": before.FailedTotal,
	} {
		if got := value(t, fams, name, map[string]string{"queue": q}); got != float64(n) {
			t.Errorf("%s = %v, the Inspector says %d", name, got, n)
		}
	}
	if before.Processed != 11 || before.Failed != 6 {
		t.Errorf("the Inspector counts %d processed and %d failed today, want 11 and 6", before.Processed, before.Failed)
	}
	if got := value(t, fams, "ghlsync_queue_latency_seconds", map[string]string{"queue": q}); got < before.Latency.Seconds() || got > after.Latency.Seconds() || got <= 0 {
		t.Errorf("ghlsync_queue_latency_seconds = %v, want between the Inspector's %v and %v", got, before.Latency.Seconds(), after.Latency.Seconds())
	}
	if got := value(t, fams, "ghlsync_queue_paused", map[string]string{"queue": q}); got != 1 {
		t.Errorf("ghlsync_queue_paused = %v for the paused queue, want 1", got)
	}
	// ghlsync's own queues are there before any task was put in them.
	for _, own := range []string{"critical", "default"} {
		if got := value(t, fams, "ghlsync_queue_tasks", map[string]string{"queue": own, "state": "pending"}); got != 0 {
			t.Errorf("ghlsync_queue_tasks{queue=%q,state=\"pending\"} = %v, want 0", own, got)
		}
	}
}

// Of two schedulers, one exports the queue metrics and the other none;
// when the exporter stops, the other takes over.
func TestQueueMetricsOneExporter(t *testing.T) {
	t.Parallel()
	stack := storetest.NewStack(t, ghltest.Options{})
	a, b := startScheduler(t, stack), startScheduler(t, stack)
	testenv.Eventually(t, 5*time.Second, "a scheduler to export the queue metrics", func() bool { return a.exports(t) || b.exports(t) })
	exporter, other := a, b
	if b.exports(t) {
		exporter, other = b, a
	}
	for range 5 {
		if !exporter.exports(t) || other.exports(t) {
			t.Fatalf("exporting: %v and %v, want one scheduler alone", exporter.exports(t), other.exports(t))
		}
	}
	exporter.stop()
	if err := <-exporter.done; err != nil {
		t.Fatalf("RunScheduler: %v", err)
	}
	exporter.done <- nil
	testenv.Eventually(t, 5*time.Second, "the other scheduler to take over the queue metrics", func() bool { return other.exports(t) })
}
