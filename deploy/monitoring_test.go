package deploy_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/ghlsync/ghlsync/alert"
	"github.com/ghlsync/ghlsync/app"
	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/store/storetest"
)

var (
	rulesFile     = filepath.Join("prometheus", "ghlsync-rules.yml")
	dashboardFile = filepath.Join("grafana", "ghlsync.json")
)

// exported returns the metrics a ghlsync process exports, with their
// labels, as the app's own wiring registers them (app.Open with a
// database: the worker's and the web's registry), read from the registry's
// descriptions so that a metric counts before its first sample.
func exported(t *testing.T) map[string][]string {
	t.Helper()
	stack := storetest.NewStack(t, ghltest.Options{})
	cfg, err := config.NewLoader(flag.NewFlagSet("worker", flag.ContinueOnError), testenv.Getenv(stack.Env()), "").Load()
	if err != nil {
		t.Fatal(err)
	}
	d, err := app.Open(context.Background(), cfg, app.NewLogger(io.Discard, cfg.LogLevel), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	descs := make(chan *prometheus.Desc)
	go func() {
		d.Metrics.Registry.Describe(descs)
		close(descs)
	}()
	// A Desc shows its name and labels only through String.
	desc := regexp.MustCompile(`^Desc\{fqName: "([^"]+)", .*variableLabels: \{([^}]*)\}\}$`)
	out := map[string][]string{}
	for dd := range descs {
		m := desc.FindStringSubmatch(dd.String())
		if m == nil {
			t.Fatalf("unexpected description %s", dd)
		}
		var ls []string
		for l := range strings.SplitSeq(m[2], ",") {
			if l = strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")"); l != "" {
				ls = append(ls, l)
			}
		}
		out[m[1]] = ls
	}
	return out
}

// checkSelectors checks that every series expr selects is one ghlsync
// exports, and that every label it matches on is one of that metric's. It
// returns the metric names, and what is wrong.
func checkSelectors(expr string, metrics map[string][]string) (names, problems []string) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, []string{fmt.Sprintf("%q does not parse: %v", expr, err)}
	}
	for _, sel := range parser.ExtractSelectors(e) {
		name := ""
		for _, m := range sel {
			if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		// A histogram's series are its name with a suffix.
		base, le := name, false
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suffix); ok && metrics[name] == nil && metrics[b] != nil {
				base, le = b, suffix == "_bucket"
			}
		}
		ls, ok := metrics[base]
		if !ok {
			problems = append(problems, fmt.Sprintf("%q is not a metric ghlsync exports", name))
			continue
		}
		names = append(names, base)
		for _, m := range sel {
			if m.Name != labels.MetricName && !slices.Contains(ls, m.Name) && !(le && m.Name == "le") {
				problems = append(problems, fmt.Sprintf("%s has no label %q (it has %v)", name, m.Name, ls))
			}
		}
	}
	return names, problems
}

// check is checkSelectors reporting to t.
func check(t *testing.T, where, expr string, metrics map[string][]string) []string {
	t.Helper()
	names, problems := checkSelectors(expr, metrics)
	for _, p := range problems {
		t.Errorf("%s: %s", where, p)
	}
	return names
}

// The alert rules load with Prometheus' own rule loader, name only what
// ghlsync exports, and cover every kind of ghlsync's own alerts; the
// dashboard shows every metric the rules use.
func TestAlertRulesAndDashboard(t *testing.T) {
	t.Parallel()
	metrics := exported(t)
	for _, want := range []string{"ghlsync_location_status", "ghlsync_sync_consecutive_failures", "ghlsync_alert_deliveries_total"} {
		if metrics[want] == nil {
			t.Fatalf("the registry lacks %s: %v", want, metrics)
		}
	}

	groups, errs := rulefmt.ParseFile(rulesFile, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Error(err) // ParseFile names the file
	}
	if groups == nil {
		t.FailNow()
	}
	ruled := map[string]bool{}
	kinds := map[string]string{}
	n := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			n++
			if r.Alert == "" {
				t.Errorf("%s: a recording rule %q: the file holds alerts", rulesFile, r.Record)
			}
			for _, m := range check(t, rulesFile+" "+r.Alert, r.Expr, metrics) {
				ruled[m] = true
			}
			if k := r.Labels["alert_kind"]; k != "" {
				if prev, dup := kinds[k]; dup {
					t.Errorf("%s: %s and %s both alert on %s", rulesFile, prev, r.Alert, k)
				}
				kinds[k] = r.Alert
			}
			if r.Annotations["summary"] == "" || r.Labels["severity"] == "" {
				t.Errorf("%s: %s has no summary or severity", rulesFile, r.Alert)
			}
		}
	}
	for _, k := range alert.Kinds {
		if kinds[k] == "" {
			t.Errorf("%s: no rule for ghlsync's alert kind %s (label alert_kind)", rulesFile, k)
		}
	}

	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title, UID string
		Panels     []struct {
			ID      int
			Title   string
			Targets []struct{ Expr, RefID string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("%s: no title, uid or panels", dashboardFile)
	}
	shown := map[string]bool{}
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("%s: panel id %d twice", dashboardFile, p.ID)
		}
		ids[p.ID] = true
		if len(p.Targets) == 0 {
			t.Errorf("%s: panel %q has no query", dashboardFile, p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range check(t, dashboardFile+" "+p.Title, tg.Expr, metrics) {
				shown[m] = true
			}
		}
	}
	for m := range ruled {
		if !shown[m] {
			t.Errorf("%s: no panel shows %s, which a rule alerts on", dashboardFile, m)
		}
	}
	t.Logf("%d rules and %d panels over %d of the %d exported metrics", n, len(dash.Panels), len(shown), len(metrics))
}

// The checks above catch what they claim to: a rule that does not parse
// or names a metric ghlsync does not export.
func TestCheckSelectorsCatches(t *testing.T) {
	t.Parallel()
	metrics := map[string][]string{"ghlsync_location_status": {"location", "status"}, "ghlsync_ghl_request_duration_seconds": {"endpoint"}}
	for expr, want := range map[string]int{
		`ghlsync_location_status{status="active"} == 1`:                          0,
		`rate(ghlsync_ghl_request_duration_seconds_bucket{le="1"}[5m])`:          0,
		`ghlsync_location_status{state="active"}`:                                1,
		`ghlsync_queue_size > 0`:                                                 1,
		`sum(rate(ghlsync_location_status[5m])`:                                  1,
		`ghlsync_location_status and on (location) ghlsync_not_exported_seconds`: 1,
	} {
		if _, problems := checkSelectors(expr, metrics); len(problems) != want {
			t.Errorf("%q: problems %q, want %d", expr, problems, want)
		}
	}
}
