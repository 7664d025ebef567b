package deploy_test

import (
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/internal/config"
)

const root = ".."

var apps = []string{"web", "scheduler", "worker"}

// load loads docker-compose.yml the way `docker compose` does, with the
// compose spec's own loader, which validates it against the spec's schema.
func load(t *testing.T) *types.Project {
	t.Helper()
	dir, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	env, err := dotenv.GetEnvFromFile(map[string]string{}, []string{filepath.Join(dir, ".env.example")})
	if err != nil {
		t.Fatal(err)
	}
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, "docker-compose.yml")}},
		Environment: env,
	})
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return p
}

func TestComposeServices(t *testing.T) {
	t.Parallel()
	p := load(t)
	for _, name := range append([]string{"redis", "postgres"}, apps...) {
		if _, ok := p.Services[name]; !ok {
			t.Errorf("no service %s", name)
		}
	}
	if w := p.Services["worker"]; w.Deploy == nil || w.Deploy.Replicas == nil {
		t.Error("worker: no replica count")
	} else if n := *w.Deploy.Replicas; n != 2 {
		t.Errorf("worker: %d replicas, want 2", n)
	}

	oneShot := map[string]bool{}
	for _, s := range p.Services {
		for dep, d := range s.DependsOn {
			if d.Condition == types.ServiceConditionCompletedSuccessfully {
				oneShot[dep] = true
			}
		}
	}
	for name, s := range p.Services {
		if oneShot[name] {
			if s.Restart != "no" {
				t.Errorf("one-shot %s restarts (%q)", name, s.Restart)
			}
			continue
		}
		if s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) == 0 {
			t.Errorf("%s has no health check", name)
		}
	}
	if !oneShot["scheduler-setup"] || !slices.Equal(p.Services["scheduler-setup"].Command, []string{"/usr/local/bin/scheduler", "setup"}) {
		t.Errorf("the scheduler does not wait for a one-shot `scheduler setup`")
	}

	for name, s := range p.Services {
		if s.Build == nil {
			continue
		}
		for _, infra := range []string{"redis", "postgres"} {
			if d, ok := s.DependsOn[infra]; !ok || d.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s does not wait for %s to be healthy: %+v", name, infra, s.DependsOn)
			}
		}
		if !slices.Contains(s.EnvFiles, types.EnvFile{Path: filepath.Join(p.WorkingDir, ".env.example"), Required: true}) {
			t.Errorf("%s does not read .env.example: %+v", name, s.EnvFiles)
		}
		if db := s.Environment["DATABASE_URL"]; db == nil || !strings.HasPrefix(*db, "postgres://") || !strings.Contains(*db, "@postgres:5432/") {
			t.Errorf("%s: DATABASE_URL %v is not the postgres service", name, db)
		}
		if r := s.Environment["REDIS_URL"]; r == nil || *r != "redis://redis:6379/0" {
			t.Errorf("%s: REDIS_URL %v is not the redis service", name, r)
		}
	}
	for name, port := range map[string]string{"web": "8080", "scheduler": "9092", "worker": "9091"} {
		test := strings.Join(p.Services[name].HealthCheck.Test, " ")
		if test != "CMD /usr/local/bin/healthcheck http://127.0.0.1:"+port+"/healthz" {
			t.Errorf("%s health check %q", name, test)
		}
	}
}

// The image builds every binary the compose file runs, as a non-root user.
func TestDockerfileBuildsWhatComposeRuns(t *testing.T) {
	t.Parallel()
	p := load(t)
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	dockerfile := string(b)
	bin := regexp.MustCompile(`^/usr/local/bin/(\w+)$`)
	for name, s := range p.Services {
		if s.Build == nil {
			continue
		}
		for _, arg := range append(slices.Clone(s.Command), s.HealthCheck.Test...) {
			if m := bin.FindStringSubmatch(arg); m != nil && !strings.Contains(dockerfile, "./cmd/"+m[1]) {
				t.Errorf("%s runs %s, which the Dockerfile does not build", name, arg)
			}
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "USER nonroot", "FROM golang:1.26 AS build"} {
		if !strings.Contains(dockerfile, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".env", ".git"} {
		if !slices.Contains(strings.Fields(string(ignore)), want) {
			t.Errorf(".dockerignore does not keep %s out of the image", want)
		}
	}
}

// .env.example names only variables ghlsync reads, and with the secrets
// filled in, the apps' environment is a valid configuration.
func TestEnvExampleIsValidConfig(t *testing.T) {
	t.Parallel()
	p := load(t)
	env := map[string]string{}
	for k, v := range p.Services["web"].Environment {
		if v != nil {
			env[k] = *v
		}
	}
	fs := flag.NewFlagSet("web", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	example, err := dotenv.Read(filepath.Join(root, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	env[config.VarClientID] = "client"
	env[config.VarClientSecret] = "secret"
	env[config.VarEncryptionKey] = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	l := config.NewLoader(fs, func(k string) string { return env[k] }, "")
	for k := range example {
		if !slices.Contains(config.Vars(), k) {
			t.Errorf(".env.example sets %s, which ghlsync does not read", k)
		}
	}
	l.Require(config.VarClientID, config.VarClientSecret, config.VarEncryptionKey)
	if _, err := l.Load(); err != nil {
		t.Errorf("the compose environment is not a valid configuration: %v", err)
	}
}

// `docker compose stop` gives the worker longer than it takes to shut
// down (then it kills it), and Redis keeps asynq's queue on disk.
func TestComposeStopsGracefullyAndKeepsTheQueue(t *testing.T) {
	t.Parallel()
	p := load(t)
	w := p.Services["worker"]
	if w.StopGracePeriod == nil {
		t.Errorf("worker: no stop_grace_period (docker's default of 10 s is shorter than the worker's shutdown timeout, %s)", app.WorkerShutdownTimeout)
	} else if grace := time.Duration(*w.StopGracePeriod); grace < app.WorkerShutdownTimeout+5*time.Second {
		t.Errorf("worker: stop_grace_period %s, want at least the shutdown timeout %s and 5 s to exit", grace, app.WorkerShutdownTimeout)
	}
	cmd := strings.Join(p.Services["redis"].Command, " ")
	if !strings.Contains(cmd, "--appendonly yes") || !strings.Contains(cmd, "--appendfsync everysec") {
		t.Errorf("redis runs %q: want --appendonly yes --appendfsync everysec, since the queue is the only copy of pending tasks", cmd)
	}
}
