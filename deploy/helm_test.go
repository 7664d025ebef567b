package deploy_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/metrics"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/tasks"
)

const (
	chartDir  = "helm/ghlsync"
	release   = "ghlsync"
	namespace = "clinic"
	secret    = "ghlsync-secrets"
	publicURL = "https://ghlsync.example.com"
)

// scaledObject and triggerAuthentication are the fields of KEDA's
// keda.sh/v1alpha1 kinds that the chart sets, as KEDA's CRDs name them;
// KEDA's own types come only with its whole operator's module.
type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			Name string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount"`
		MaxReplicaCount *int32 `json:"maxReplicaCount"`
		PollingInterval *int32 `json:"pollingInterval"`
		CooldownPeriod  *int32 `json:"cooldownPeriod"`
		Triggers        []struct {
			Type string `json:"type"`
			Name string `json:"name"`
			// KEDA's metadata values are strings: a number fails here.
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
			} `json:"authenticationRef"`
		} `json:"triggers"`
	} `json:"spec"`
}

type triggerAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SecretTargetRef []struct {
			Parameter string `json:"parameter"`
			Name      string `json:"name"`
			Key       string `json:"key"`
		} `json:"secretTargetRef"`
	} `json:"spec"`
}

// rendered is the chart rendered as `helm template` renders it, every
// object decoded strictly into its type.
type rendered struct {
	deployments map[string]*appsv1.Deployment // by component
	services    map[string]*corev1.Service    // by name
	pdbs        []*policyv1.PodDisruptionBudget
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
	jobs        []*batchv1.Job // hooks
	hookNames   map[string][]string
	monitors    []*monitoringv1.ServiceMonitor
	scaled      []*scaledObject
	auths       []*triggerAuthentication
}

// render renders the chart with vals over its values.yaml the way helm's
// install and template do (action.Configuration.renderResources): the
// chart's kubeVersion checked, the engine in strict mode (a value the
// templates name that values.yaml lacks is an error), NOTES.txt set
// aside, hooks sorted apart from the manifests.
func render(t *testing.T, vals map[string]any) (*rendered, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load the chart: %v", err)
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = chartutil.KubeVersion{Version: "v1.31.0", Major: "1", Minor: "31"}
	if !chartutil.IsCompatibleRange(ch.Metadata.KubeVersion, caps.KubeVersion.String()) {
		t.Fatalf("the chart's kubeVersion %q excludes %s", ch.Metadata.KubeVersion, caps.KubeVersion)
	}
	values, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: release, Namespace: namespace, IsInstall: true, Revision: 1}, caps)
	if err != nil {
		return nil, err
	}
	files, err := engine.Engine{Strict: true}.Render(ch, values)
	if err != nil {
		return nil, err
	}
	for name := range files {
		if strings.HasSuffix(name, "NOTES.txt") {
			delete(files, name)
		}
	}
	hooks, manifests, err := releaseutil.SortManifests(files, nil, releaseutil.InstallOrder)
	if err != nil {
		t.Fatalf("the rendered chart does not parse: %v", err)
	}
	r := &rendered{deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{}, hookNames: map[string][]string{}}
	for _, h := range hooks {
		obj := decode(t, h.Path, h.Manifest)
		job, ok := obj.(*batchv1.Job)
		if !ok {
			t.Fatalf("%s: a %T hook, want only the migration Job", h.Path, obj)
		}
		r.jobs = append(r.jobs, job)
		for _, e := range h.Events {
			r.hookNames[job.Name] = append(r.hookNames[job.Name], string(e))
		}
	}
	for _, m := range manifests {
		switch o := decode(t, m.Name, m.Content).(type) {
		case *appsv1.Deployment:
			r.deployments[o.Labels["app.kubernetes.io/component"]] = o
		case *corev1.Service:
			r.services[o.Name] = o
		case *policyv1.PodDisruptionBudget:
			r.pdbs = append(r.pdbs, o)
		case *autoscalingv2.HorizontalPodAutoscaler:
			r.hpas = append(r.hpas, o)
		case *monitoringv1.ServiceMonitor:
			r.monitors = append(r.monitors, o)
		case *scaledObject:
			r.scaled = append(r.scaled, o)
		case *triggerAuthentication:
			r.auths = append(r.auths, o)
		default:
			t.Errorf("%s: a %T outside a hook", m.Name, o)
		}
	}
	return r, nil
}

// decode decodes one rendered document strictly into the type of its
// apiVersion and kind: an unknown or misspelt field, a duplicate one or a
// value of the wrong type fails, as does a name or label Kubernetes
// would refuse.
func decode(t *testing.T, source, doc string) any {
	t.Helper()
	var head metav1.TypeMeta
	if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
		t.Fatalf("%s: %v", source, err)
	}
	var obj interface {
		metav1.Object
	}
	switch head.APIVersion + "/" + head.Kind {
	case "apps/v1/Deployment":
		obj = &appsv1.Deployment{}
	case "v1/Service":
		obj = &corev1.Service{}
	case "policy/v1/PodDisruptionBudget":
		obj = &policyv1.PodDisruptionBudget{}
	case "autoscaling/v2/HorizontalPodAutoscaler":
		obj = &autoscalingv2.HorizontalPodAutoscaler{}
	case "batch/v1/Job":
		obj = &batchv1.Job{}
	case "monitoring.coreos.com/v1/ServiceMonitor":
		obj = &monitoringv1.ServiceMonitor{}
	case "keda.sh/v1alpha1/ScaledObject":
		obj = &scaledObject{}
	case "keda.sh/v1alpha1/TriggerAuthentication":
		obj = &triggerAuthentication{}
	default:
		t.Fatalf("%s: unexpected %s %s", source, head.APIVersion, head.Kind)
	}
	if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
		t.Fatalf("%s: %s does not decode strictly: %v\n%s", source, head.Kind, err, doc)
	}
	nameErrs := validation.IsDNS1123Subdomain(obj.GetName())
	if head.Kind == "Service" {
		nameErrs = validation.IsDNS1035Label(obj.GetName())
	}
	for _, e := range nameErrs {
		t.Errorf("%s: %s name %q: %s", source, head.Kind, obj.GetName(), e)
	}
	checkLabels(t, source, obj.GetLabels())
	return obj
}

func checkLabels(t *testing.T, source string, l map[string]string) {
	t.Helper()
	for k, v := range l {
		for _, e := range append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...) {
			t.Errorf("%s: label %s=%s: %s", source, k, v, e)
		}
	}
}

// required are the values without which the chart does not render.
func required() map[string]any {
	return map[string]any{"existingSecret": secret, "publicURL": publicURL}
}

func with(vals map[string]any, more map[string]any) map[string]any {
	out := maps.Clone(vals)
	maps.Copy(out, more)
	return out
}

func mustRender(t *testing.T, vals map[string]any) *rendered {
	t.Helper()
	r, err := render(t, vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return r
}

// pods are the pod templates of every Deployment and of the migration Job.
func (r *rendered) pods() map[string]*corev1.PodTemplateSpec {
	out := map[string]*corev1.PodTemplateSpec{}
	for c, d := range r.deployments {
		out[c] = &d.Spec.Template
	}
	for _, j := range r.jobs {
		out[j.Name] = &j.Spec.Template
	}
	return out
}

// process is how each Deployment's container is started: the command of
// docker-compose.yml's service, the METRICS_ADDR default of its cmd (where
// /healthz and /readyz are served) and the variables its cmd requires.
var processes = map[string]struct {
	command []string
	metrics string
	require []string
}{
	"web":       {[]string{"/usr/local/bin/web"}, "", []string{config.VarClientID, config.VarClientSecret, config.VarEncryptionKey}},
	"worker":    {[]string{"/usr/local/bin/worker"}, ":9091", []string{config.VarClientID, config.VarClientSecret, config.VarEncryptionKey}},
	"scheduler": {[]string{"/usr/local/bin/scheduler"}, ":9092", nil},
}

// secretVars are the variables that must come from the Secret.
var secretVars = []string{config.VarDatabaseURL, config.VarRedisURL, config.VarClientSecret, config.VarEncryptionKey, config.VarOldKeys, config.VarAdminPassword}

// loadEnv loads a container's environment as its process would, secret
// references filled in with test values, and fails the test when it is
// not a valid configuration for that process.
func loadEnv(t *testing.T, name string, c corev1.Container, metricsDefault string, require []string) *config.Config {
	t.Helper()
	fill := map[string]string{
		config.VarDatabaseURL:   "postgres://ghlsync:pw@postgres:5432/ghlsync",
		config.VarRedisURL:      "redis://redis:6379/0",
		config.VarClientID:      "client",
		config.VarClientSecret:  "secret",
		config.VarEncryptionKey: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
		config.VarOldKeys:       "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
		config.VarAdminPassword: "pw",
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			env[e.Name] = fill[e.Name]
		} else {
			env[e.Name] = e.Value
		}
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	l := config.NewLoader(fs, func(k string) string { return env[k] }, metricsDefault)
	l.Require(require...)
	cfg, err := l.Load()
	if err != nil {
		t.Fatalf("%s: its environment is not a valid configuration: %v", name, err)
	}
	return cfg
}

func port(t *testing.T, c corev1.Container, name string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("%s: no container port named %q", c.Name, name)
	return 0
}

func addrPort(t *testing.T, addr string) string {
	t.Helper()
	_, p, ok := strings.Cut(addr, ":")
	if !ok {
		t.Fatalf("listen address %q has no port", addr)
	}
	return p
}

// The chart renders with its defaults and the two required values; every
// object decodes strictly into its Kubernetes type, and the deployment has
// what the issue asks of it.
func TestHelmChartDefaults(t *testing.T) {
	t.Parallel()
	r := mustRender(t, required())
	if got := slices.Sorted(maps.Keys(r.deployments)); !slices.Equal(got, []string{"scheduler", "web", "worker"}) {
		t.Fatalf("Deployments of %v, want web, worker and scheduler", got)
	}
	if len(r.monitors) != 0 || len(r.scaled) != 0 || len(r.auths) != 0 {
		t.Errorf("defaults render %d ServiceMonitors, %d ScaledObjects, %d TriggerAuthentications; want none", len(r.monitors), len(r.scaled), len(r.auths))
	}
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}

	for component, p := range processes {
		d := r.deployments[component]
		if len(d.Spec.Template.Spec.Containers) != 1 {
			t.Fatalf("%s: %d containers", component, len(d.Spec.Template.Spec.Containers))
		}
		c := d.Spec.Template.Spec.Containers[0]
		if !slices.Equal(c.Command, p.command) || !strings.Contains(string(dockerfile), "./cmd/"+path.Base(p.command[0])) {
			t.Errorf("%s runs %v, want %v, which the Dockerfile builds", component, c.Command, p.command)
		}
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: the selector %v does not select its own pods (%v)", component, d.Spec.Selector, err)
		}
		cfg := loadEnv(t, component, c, p.metrics, p.require)

		// Probes: liveness on /healthz everywhere; readiness on /readyz
		// where the process serves it (METRICS_ADDR). The web's Service
		// routes on /healthz: its /readyz fails while a queue is paused.
		wantReady := "/readyz"
		portOf := map[string]string{"metrics": addrPort(t, cfg.MetricsAddr)}
		if component == "web" {
			wantReady = "/healthz"
			portOf["http"] = addrPort(t, cfg.WebAddr)
		}
		for kind, probe := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
			want := map[string]string{"liveness": "/healthz", "readiness": wantReady}[kind]
			if probe == nil || probe.HTTPGet == nil {
				t.Errorf("%s: no HTTP %s probe", component, kind)
				continue
			}
			named := probe.HTTPGet.Port.String()
			if probe.HTTPGet.Path != want || portOf[named] == "" || fmt.Sprint(port(t, c, named)) != portOf[named] {
				t.Errorf("%s: %s probe on %s port %s, want %s on the port the process listens on (%v)", component, kind, probe.HTTPGet.Path, named, want, portOf)
			}
		}
		if d.Spec.Template.Spec.TerminationGracePeriodSeconds == nil {
			t.Errorf("%s: no terminationGracePeriodSeconds", component)
		}
	}

	// Graceful scale-in: the kubelet waits longer than the worker's own
	// shutdown timeout, which is at least app.WorkerShutdownTimeout.
	w := r.deployments["worker"]
	wc := loadEnv(t, "worker", w.Spec.Template.Spec.Containers[0], ":9091", processes["worker"].require)
	grace := time.Duration(*w.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	if wc.WorkerShutdownTimeout < app.WorkerShutdownTimeout || grace < wc.WorkerShutdownTimeout+5*time.Second {
		t.Errorf("worker: terminationGracePeriodSeconds %s, WORKER_SHUTDOWN_TIMEOUT %s: want the timeout at least %s and the grace at least 5 s more",
			grace, wc.WorkerShutdownTimeout, app.WorkerShutdownTimeout)
	}
	if w.Spec.Replicas != nil {
		t.Errorf("worker: replicas %d set beside its HorizontalPodAutoscaler: every upgrade would reset it", *w.Spec.Replicas)
	}

	for name, pod := range r.pods() {
		checkPod(t, name, pod)
	}
	checkSecrets(t, r)
	checkPDBs(t, r)
	checkServices(t, r)

	// The HorizontalPodAutoscaler scales the workers on CPU.
	if len(r.hpas) != 1 {
		t.Fatalf("%d HorizontalPodAutoscalers, want 1", len(r.hpas))
	}
	h := r.hpas[0]
	if h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.ScaleTargetRef.Name != w.Name || len(h.Spec.Metrics) != 1 ||
		h.Spec.Metrics[0].Resource == nil || h.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU || h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 {
		t.Errorf("HorizontalPodAutoscaler %+v, want the worker Deployment on CPU", h.Spec)
	}
	if w.Spec.Template.Spec.Containers[0].Resources.Requests.Cpu().IsZero() {
		t.Error("worker: no CPU request, which a CPU HorizontalPodAutoscaler needs")
	}

	// The migration runs `scheduler setup` once before install and upgrade.
	if len(r.jobs) != 1 {
		t.Fatalf("%d hook Jobs, want the migration", len(r.jobs))
	}
	j := r.jobs[0]
	if got := slices.Sorted(slices.Values(r.hookNames[j.Name])); !slices.Equal(got, []string{"pre-install", "pre-upgrade"}) {
		t.Errorf("the migration Job runs at %v, want pre-install and pre-upgrade", got)
	}
	if p := j.Annotations["helm.sh/hook-delete-policy"]; !strings.Contains(p, "before-hook-creation") {
		t.Errorf("the migration Job's delete policy %q: a second upgrade would find the first one's Job in its way", p)
	}
	jc := j.Spec.Template.Spec.Containers[0]
	if !slices.Equal(jc.Command, []string{"/usr/local/bin/scheduler", "setup"}) || j.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("the migration Job runs %v (restart %s), want scheduler setup, not restarted in place", jc.Command, j.Spec.Template.Spec.RestartPolicy)
	}
	loadEnv(t, "migration", jc, ":9092", nil)
}

// checkPod checks the pod's and its containers' security and resources.
func checkPod(t *testing.T, name string, pod *corev1.PodTemplateSpec) {
	t.Helper()
	s := pod.Spec
	if s.SecurityContext == nil || s.SecurityContext.RunAsNonRoot == nil || !*s.SecurityContext.RunAsNonRoot ||
		s.SecurityContext.RunAsUser == nil || *s.SecurityContext.RunAsUser == 0 {
		t.Errorf("%s: pod security context %+v, want non-root with a non-zero user", name, s.SecurityContext)
	}
	if s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken {
		t.Errorf("%s: mounts a service account token it never uses", name)
	}
	if len(s.Volumes) != 0 {
		t.Errorf("%s: volumes %v: nothing of ghlsync writes files", name, s.Volumes)
	}
	for _, c := range append(slices.Clone(s.InitContainers), s.Containers...) {
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("%s/%s: security context %+v, want a read-only root file system, no privilege escalation, every capability dropped", name, c.Name, sc)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
			t.Errorf("%s/%s: requests %v, want CPU and memory", name, c.Name, c.Resources.Requests)
		}
		if want := "ghlsync:0.1.0"; c.Image != want {
			t.Errorf("%s/%s: image %s, want %s (the chart's appVersion)", name, c.Name, c.Image, want)
		}
		checkLabels(t, name, pod.Labels)
	}
}

// checkSecrets: every secret variable comes from existingSecret, each
// process gets only the secrets it needs, and the chart renders no Secret
// (render fails on any kind it does not expect).
func checkSecrets(t *testing.T, r *rendered) {
	t.Helper()
	need := map[string][]string{
		"web":                  {config.VarDatabaseURL, config.VarRedisURL, config.VarClientID, config.VarClientSecret, config.VarEncryptionKey, config.VarOldKeys, config.VarAdminPassword},
		"worker":               {config.VarDatabaseURL, config.VarRedisURL, config.VarClientID, config.VarClientSecret, config.VarEncryptionKey, config.VarOldKeys},
		"scheduler":            {config.VarDatabaseURL, config.VarRedisURL},
		release + "-migration": {config.VarDatabaseURL},
	}
	for name, pod := range r.pods() {
		var fromSecret []string
		for _, e := range pod.Spec.Containers[0].Env {
			if e.ValueFrom == nil {
				if slices.Contains(secretVars, e.Name) {
					t.Errorf("%s: %s is a literal value, not a reference to the Secret", name, e.Name)
				}
				continue
			}
			ref := e.ValueFrom.SecretKeyRef
			if ref == nil || ref.Name != secret || ref.Key != e.Name {
				t.Errorf("%s: %s comes from %+v, want key %s of the Secret %s", name, e.Name, e.ValueFrom, e.Name, secret)
				continue
			}
			optional := ref.Optional != nil && *ref.Optional
			if optional != (e.Name == config.VarOldKeys || e.Name == config.VarAdminPassword) {
				t.Errorf("%s: %s optional %v", name, e.Name, optional)
			}
			fromSecret = append(fromSecret, e.Name)
		}
		if !slices.Equal(slices.Sorted(slices.Values(fromSecret)), slices.Sorted(slices.Values(need[name]))) {
			t.Errorf("%s reads %v from the Secret, want %v", name, fromSecret, need[name])
		}
		if len(pod.Spec.Containers[0].EnvFrom) != 0 {
			t.Errorf("%s: envFrom would hand it every key of the Secret", name)
		}
	}
}

// checkPDBs: one PodDisruptionBudget per Deployment, selecting its pods,
// that lets a drain evict one pod at a time even at one replica.
func checkPDBs(t *testing.T, r *rendered) {
	t.Helper()
	covered := map[string]int{}
	for _, p := range r.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		for c, d := range r.deployments {
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				covered[c]++
			}
		}
		if p.Spec.MaxUnavailable == nil || p.Spec.MaxUnavailable.IntValue() < 1 || p.Spec.MinAvailable != nil {
			t.Errorf("PodDisruptionBudget %s: %+v, want maxUnavailable of at least 1", p.Name, p.Spec)
		}
	}
	for c := range r.deployments {
		if covered[c] != 1 {
			t.Errorf("%s: %d PodDisruptionBudgets select its pods, want 1", c, covered[c])
		}
	}
	if len(r.pdbs) != len(r.deployments) {
		t.Errorf("%d PodDisruptionBudgets for %d Deployments", len(r.pdbs), len(r.deployments))
	}
}

// checkServices: the web Service reaches the web pods' http port only;
// each process has a metrics Service on its metrics port that keeps
// not-ready pods (a failing one is the one to watch).
func checkServices(t *testing.T, r *rendered) {
	t.Helper()
	selects := func(s *corev1.Service) []string {
		var out []string
		for c, d := range r.deployments {
			if labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				out = append(out, c)
			}
		}
		return out
	}
	web := r.services[release+"-web"]
	if web == nil || !slices.Equal(selects(web), []string{"web"}) || len(web.Spec.Ports) != 1 || web.Spec.Ports[0].TargetPort.String() != "http" {
		t.Errorf("web Service %+v, want the web pods' http port alone", web)
	}
	for c, d := range r.deployments {
		s := r.services[release+"-"+c+"-metrics"]
		if s == nil {
			t.Errorf("%s: no metrics Service", c)
			continue
		}
		if !slices.Equal(selects(s), []string{c}) || len(s.Spec.Ports) != 1 || s.Spec.Ports[0].TargetPort.String() != "metrics" ||
			s.Spec.Ports[0].Port != port(t, d.Spec.Template.Spec.Containers[0], "metrics") || !s.Spec.PublishNotReadyAddresses {
			t.Errorf("%s metrics Service %+v", c, s.Spec)
		}
	}
	if len(r.services) != 4 {
		t.Errorf("%d Services, want web and three metrics", len(r.services))
	}
}

// kedaValues turn on KEDA with both kinds of trigger, and the
// ServiceMonitor.
func kedaValues() map[string]any {
	return with(required(), map[string]any{
		"keda": map[string]any{
			"enabled":    true,
			"prometheus": map[string]any{"serverAddress": "http://prometheus-operated.monitoring:9090"},
			"redisList": map[string]any{
				"enabled":           true,
				"metadata":          map[string]any{"address": "redis-master.redis:6379", "databaseIndex": 0},
				"passwordSecretKey": "REDIS_PASSWORD",
			},
		},
		"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "kube-prometheus-stack"}},
		"worker": map[string]any{
			"nodeSelector": map[string]any{"pool": "workers"},
			"tolerations":  []any{map[string]any{"key": "dedicated", "operator": "Equal", "value": "workers", "effect": "NoSchedule"}},
		},
		"env": map[string]any{config.VarLogLevel: "debug", config.VarRefreshWindow: "2h"},
	})
}

// With KEDA and the ServiceMonitor enabled, the chart renders a
// ScaledObject in place of the HorizontalPodAutoscaler, on the queue
// metrics the scheduler exports and on asynq's real pending lists, and a
// ServiceMonitor over every process's metrics Service.
func TestHelmChartKEDAAndServiceMonitor(t *testing.T) {
	t.Parallel()
	r := mustRender(t, kedaValues())
	w := r.deployments["worker"]
	if len(r.hpas) != 0 {
		t.Errorf("%d HorizontalPodAutoscalers beside KEDA's own", len(r.hpas))
	}
	if w.Spec.Replicas != nil {
		t.Errorf("worker: replicas set beside the ScaledObject")
	}
	ws := w.Spec.Template.Spec
	if ws.NodeSelector["pool"] != "workers" || len(ws.Tolerations) != 1 {
		t.Errorf("worker: nodeSelector %v, tolerations %v: want worker's values", ws.NodeSelector, ws.Tolerations)
	}
	if cfg := loadEnv(t, "worker", ws.Containers[0], ":9091", processes["worker"].require); cfg.LogLevel.String() != "DEBUG" || cfg.RefreshWindow != 2*time.Hour {
		t.Errorf("worker: env values did not reach it: log level %s, refresh window %s", cfg.LogLevel, cfg.RefreshWindow)
	}
	if len(r.scaled) != 1 {
		t.Fatalf("%d ScaledObjects, want 1", len(r.scaled))
	}
	so := r.scaled[0].Spec
	if so.ScaleTargetRef.Name != w.Name || so.MinReplicaCount == nil || *so.MinReplicaCount < 1 {
		t.Errorf("ScaledObject targets %q from %v replicas, want %s from at least 1", so.ScaleTargetRef.Name, so.MinReplicaCount, w.Name)
	}

	// The metric the Prometheus triggers query is one the queue
	// collector exports, over the scheduler's metrics Service.
	descs := make(chan *prometheus.Desc, 20)
	metrics.NewQueueCollector(nil, nil).Describe(descs)
	close(descs)
	var exported []string
	for d := range descs {
		exported = append(exported, d.String())
	}
	// The chart's defaults are the worker's.
	perWorker := map[string]string{tasks.QueueDefault: strconv.Itoa(app.DefaultSyncConcurrency),
		tasks.QueueCritical: strconv.Itoa(app.TokenTasksPerCall * app.DefaultTokenConcurrency)}
	triggers := map[string]int{}
	rc := testenv.RedisClient(t)
	for _, tr := range so.Triggers {
		triggers[tr.Type]++
		switch tr.Type {
		case "prometheus":
			q := tr.Metadata["query"]
			queue := ""
			for name := range perWorker {
				if strings.Contains(q, fmt.Sprintf("queue=%q", name)) {
					queue = name
				}
			}
			if !strings.HasPrefix(q, "sum(ghlsync_queue_tasks{") || !slices.ContainsFunc(exported, func(d string) bool { return strings.Contains(d, `"ghlsync_queue_tasks"`) }) ||
				!strings.Contains(q, fmt.Sprintf(`job="%s-scheduler-metrics"`, release)) || !strings.Contains(q, fmt.Sprintf(`namespace="%s"`, namespace)) ||
				!strings.Contains(q, `state=~"pending|active"`) || queue == "" {
				t.Errorf("prometheus trigger %q: want the sum of ghlsync_queue_tasks pending or active of one queue, from this release's scheduler", q)
			}
			if tr.Metadata["threshold"] != perWorker[queue] || tr.Metadata["serverAddress"] == "" {
				t.Errorf("prometheus trigger for %s: %v, want threshold %s (a worker's slots)", queue, tr.Metadata, perWorker[queue])
			}
		case "redis":
			checkPendingList(t, rc, tr.Metadata["listName"])
			if tr.Metadata["address"] != "redis-master.redis:6379" || tr.Metadata["databaseIndex"] != "0" || tr.AuthenticationRef == nil {
				t.Errorf("redis trigger %v %+v", tr.Metadata, tr.AuthenticationRef)
			}
		}
	}
	if triggers["prometheus"] != 2 || triggers["redis"] != 2 {
		t.Errorf("triggers %v, want a prometheus and a redis one per queue", triggers)
	}
	if len(r.auths) != 1 || len(r.auths[0].Spec.SecretTargetRef) != 1 ||
		r.auths[0].Spec.SecretTargetRef[0] != struct {
			Parameter string `json:"parameter"`
			Name      string `json:"name"`
			Key       string `json:"key"`
		}{"password", secret, "REDIS_PASSWORD"} {
		t.Errorf("TriggerAuthentications %+v, want the Redis password from %s", r.auths, secret)
	}

	if len(r.monitors) != 1 {
		t.Fatalf("%d ServiceMonitors, want 1", len(r.monitors))
	}
	m := r.monitors[0]
	if m.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("ServiceMonitor labels %v lack serviceMonitor.labels", m.Labels)
	}
	sel, err := metav1.LabelSelectorAsSelector(&m.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	var scraped []string
	for name, s := range r.services {
		if sel.Matches(labels.Set(s.Labels)) {
			scraped = append(scraped, name)
		}
	}
	want := []string{release + "-scheduler-metrics", release + "-web-metrics", release + "-worker-metrics"}
	if slices.Sort(scraped); !slices.Equal(scraped, want) {
		t.Errorf("the ServiceMonitor selects %v, want %v", scraped, want)
	}
	if len(m.Spec.Endpoints) != 1 || m.Spec.Endpoints[0].Port != "metrics" || m.Spec.Endpoints[0].Path != "/metrics" ||
		!slices.Equal(m.Spec.NamespaceSelector.MatchNames, []string{namespace}) {
		t.Errorf("ServiceMonitor spec %+v", m.Spec)
	}
}

// checkPendingList checks that list is where asynq keeps a queue's
// pending tasks: a task a real asynq client enqueues there is in it.
func checkPendingList(t *testing.T, rc *redis.Client, list string) {
	t.Helper()
	queue := strings.TrimSuffix(strings.TrimPrefix(list, "asynq:{"), "}:pending")
	if queue != tasks.QueueDefault && queue != tasks.QueueCritical {
		t.Errorf("redis trigger on %q, not a pending list of ghlsync's queues", list)
		return
	}
	ctx := context.Background()
	before := rc.LLen(ctx, list).Val()
	if _, err := asynq.NewClientFromRedisClient(rc).Enqueue(asynq.NewTask("test:keda", nil), asynq.Queue(queue)); err != nil {
		t.Fatal(err)
	}
	if after := rc.LLen(ctx, list).Val(); after != before+1 {
		t.Errorf("asynq put a %s task elsewhere than %s (its length %d, then %d)", queue, list, before, after)
	}
}

// Rendering without a required value, or with a value the workers cannot
// live with, fails with a message that names the value and says what it
// must be.
func TestHelmChartRequiredValues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		vals map[string]any
		want string
	}{
		{"no existingSecret", map[string]any{"publicURL": publicURL}, "existingSecret is required"},
		{"no publicURL", map[string]any{"existingSecret": secret}, "publicURL is required"},
		{"publicURL with a path", with(required(), map[string]any{"publicURL": publicURL + "/ghlsync"}), "must be an origin only"},
		{"grace shorter than the shutdown", with(required(), map[string]any{"worker": map[string]any{"terminationGracePeriodSeconds": 30}}),
			"worker.terminationGracePeriodSeconds is 30, must be at least 35"},
		{"KEDA without Prometheus", with(kedaValues(), map[string]any{"keda": map[string]any{"enabled": true, "prometheus": map[string]any{"serverAddress": ""}}}),
			"keda.prometheus.serverAddress is required"},
		{"KEDA from zero", with(kedaValues(), map[string]any{"keda": map[string]any{"enabled": true, "minReplicaCount": 0, "prometheus": map[string]any{"serverAddress": "http://p:9090"}}}),
			"keda.minReplicaCount must be at least 1"},
		{"a required secret key emptied", with(required(), map[string]any{"secretKeys": map[string]any{"GHL_CLIENT_SECRET": ""}}),
			"secretKeys.GHL_CLIENT_SECRET is required"},
	} {
		_, err := render(t, tc.vals)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: render error %v, want one saying %q", tc.name, err, tc.want)
		}
	}
}
