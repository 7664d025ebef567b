package testenv

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// processVar names, in a re-executed test binary, which process to be.
const processVar = "GHLSYNC_TEST_PROCESS"

// RunProcess is called first in a TestMain: when the test binary was
// started by StartProcess as name, it runs main (the real wiring of a
// binary, with os.Args[1:] and the environment) and exits with its status;
// otherwise it returns and the tests run.
func RunProcess(name string, main func() int) {
	if os.Getenv(processVar) == name {
		os.Exit(main())
	}
}

// Process is a ghlsync process started from the test binary.
type Process struct {
	Cmd    *exec.Cmd
	Output *Buffer // stdout and stderr
	done   chan struct{}
	err    error
}

// StartProcess starts the test binary as the process name (see
// RunProcess) with env on top of this process's environment. At cleanup a
// still running process is killed. Under -short the test is skipped
// here: process-level tests are the slow ones, and -short is for the
// quick loop.
func StartProcess(t testing.TB, name string, env map[string]string, args ...string) *Process {
	t.Helper()
	if testing.Short() {
		t.Skip("process-level test: skipped under -short")
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), processVar+"="+name)
	return start(t, name, cmd, env)
}

// Kill sends SIGKILL and waits for the process to end.
func (p *Process) Kill() {
	p.Cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits up to timeout for the exit status; -1 when
// it did not end in time (it is then killed).
func (p *Process) Stop(timeout time.Duration) int {
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.Kill()
		return -1
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		return -1
	}
	return 0
}

// Done is closed when the process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// FreeAddr returns a loopback address with a port free at the time, for a
// process under test to listen on.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// StartBinary starts the program at path (a binary the test built, such
// as a real cmd/ binary) with args and env on top of this process's
// environment, as StartProcess starts the test binary: output kept, killed
// at cleanup.
func StartBinary(t testing.TB, path string, env map[string]string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Env = os.Environ()
	return start(t, path, cmd, env)
}

// start starts cmd, named name in the test's log, with env on top of its
// environment: output kept, killed at cleanup.
func start(t testing.TB, name string, cmd *exec.Cmd, env map[string]string) *Process {
	t.Helper()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &Process{Cmd: cmd, Output: &Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.Output, p.Output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("output of %s (pid %d):\n%s", name, cmd.Process.Pid, p.Output)
		}
	})
	return p
}
