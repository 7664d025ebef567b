package app_test

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/store/storetest"
)

// BenchmarkIdleMemory builds the real worker, web and scheduler binaries,
// starts each as a child process on one database and Redis (with 100
// connected locations and the default schedules), waits until each answers
// /healthz, lets them idle (GHLSYNC_IDLE, default 30s), and reports each
// one's resident memory (VmRSS of /proc/PID/status) in MB. Issue 15 asks
// each under 50 MB. The line it prints splits each into its anonymous
// part (heap, stacks: the process's own) and the executable's pages it
// has mapped: those are shared page cache, and how many a process maps
// depends on how the kernel holds the file (large folios map in big
// pieces), a few megabytes either way from run to run.
//
//	go test -run '^$' -bench IdleMemory -benchtime 1x ./app/
func BenchmarkIdleMemory(b *testing.B) {
	idle := 30 * time.Second
	if v := os.Getenv("GHLSYNC_IDLE"); v != "" {
		var err error
		if idle, err = time.ParseDuration(v); err != nil {
			b.Fatal(err)
		}
	}
	for range b.N {
		b.StopTimer()
		dir := b.TempDir()
		build := exec.Command("go", "build", "-o", dir, "./cmd/worker", "./cmd/web", "./cmd/scheduler")
		build.Dir = ".."
		if out, err := build.CombinedOutput(); err != nil {
			b.Fatalf("go build: %v\n%s", err, out)
		}
		stack := storetest.NewStack(b, ghltest.Options{})
		for i := range 100 {
			stack.Connect(b, fmt.Sprintf("mem%03d", i), time.Now().Add(20*time.Hour))
		}
		setup := testenv.StartBinary(b, filepath.Join(dir, "scheduler"), stack.Env(), "setup")
		select {
		case <-setup.Done():
		case <-time.After(time.Minute):
			b.Fatal("scheduler setup still running after a minute")
		}
		if code := setup.Cmd.ProcessState.ExitCode(); code != 0 {
			b.Fatalf("scheduler setup: exit status %d\n%s", code, setup.Output)
		}
		type proc struct {
			name string
			p    *testenv.Process
			addr string
		}
		var procs []proc
		for _, name := range []string{"worker", "web", "scheduler"} {
			metrics, web := testenv.FreeAddr(b), testenv.FreeAddr(b)
			env := stack.Env("METRICS_ADDR", metrics, "WEB_ADDR", web)
			addr := metrics
			if name == "web" {
				addr = web
			}
			procs = append(procs, proc{name, testenv.StartBinary(b, filepath.Join(dir, name), env), addr})
		}
		for _, p := range procs {
			testenv.Eventually(b, time.Minute, p.name+" to answer /healthz", func() bool {
				resp, err := http.Get("http://" + p.addr + "/healthz")
				if err != nil {
					return false
				}
				resp.Body.Close()
				return resp.StatusCode == http.StatusOK
			})
		}
		time.Sleep(idle) // the idle stretch being measured
		var line []string
		for _, p := range procs {
			st := memoryStatus(b, p.p.Cmd.Process.Pid)
			b.ReportMetric(st["VmRSS"], p.name+"-MB")
			line = append(line, fmt.Sprintf("%s %.1f MB (anonymous %.1f, file %.1f)", p.name, st["VmRSS"], st["RssAnon"], st["RssFile"]))
		}
		fmt.Printf("resident memory after %s idle (want each < 50 MB): %s\n", idle, strings.Join(line, ", "))
	}
}

// memoryStatus reads a process's VmRSS, RssAnon and RssFile, in MB.
func memoryStatus(b *testing.B, pid int) map[string]float64 {
	b.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]float64{}
	for _, l := range strings.Split(string(status), "\n") {
		name, rest, _ := strings.Cut(l, ":")
		switch name {
		case "VmRSS", "RssAnon", "RssFile":
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				b.Fatal(err)
			}
			out[name] = kb / 1024
		}
	}
	if len(out) != 3 {
		b.Fatalf("/proc/%d/status lacks VmRSS, RssAnon or RssFile:\n%s", pid, status)
	}
	return out
}
