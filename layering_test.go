package ghlsync_test

import (
	"encoding/json"
	"io"
	"os/exec"
	"path"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/ghlsync/ghlsync/"

// layers says which of the module's packages each package may import (its
// own code, not its tests): the arrows of DESIGN.md point down only,
//
//	cmd → app → {web, scheduler, tasks} → {alert, syncer, refresh} → {ghl, store, internal/*}
//
// and internal/ holds leaves. A pattern ending in "/*" matches the packages
// under it.
var layers = map[string][]string{
	"cmd/*":           {"app", "internal/*"},
	"app":             {"app/sandbox", "web", "scheduler", "tasks", "alert", "syncer", "refresh", "ghl", "store", "internal/*"},
	"app/sandbox":     {"ghl/ghltest", "store", "internal/*"},
	"web":             {"syncer", "refresh", "ghl", "store", "internal/*"},
	"scheduler":       {"store", "internal/*"},
	"tasks":           {"alert", "syncer", "refresh", "ghl", "store", "internal/*"},
	"alert":           {"syncer", "store", "internal/*"},
	"syncer":          {"refresh", "ghl", "store", "internal/*"},
	"refresh":         {"ghl", "store", "internal/*"},
	"ghl":             {"internal/*"},
	"ghl/ghltest":     {"ghl", "internal/*"},
	"store":           {"internal/*"},
	"store/storetest": {"store", "ghl/ghltest", "internal/*"},
	"internal/*":      {"internal/*"},
	"deploy":          {},
}

// gormAllowed are the only packages that may import gorm.io/..., tests
// included: the store owns every query.
var gormAllowed = []string{"store", "store/storetest"}

type listedPackage struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

func listPackages(t *testing.T) []listedPackage {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p listedPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		p.ImportPath = strings.TrimPrefix(p.ImportPath, module)
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// layerOf returns the layers key that matches pkg, "" when none does.
func layerOf(pkg string) string {
	if _, ok := layers[pkg]; ok {
		return pkg
	}
	for dir := path.Dir(pkg); dir != "."; dir = path.Dir(dir) {
		if _, ok := layers[dir+"/*"]; ok {
			return dir + "/*"
		}
	}
	return ""
}

func allowed(pkg, imp string) bool {
	for _, a := range layers[layerOf(pkg)] {
		if a == imp || strings.HasSuffix(a, "/*") && strings.HasPrefix(imp, strings.TrimSuffix(a, "*")) {
			return true
		}
	}
	return false
}

// TestLayering fails when an import arrow points up or sideways, when a
// package has no place in the layering, or when GORM leaks out of store.
func TestLayering(t *testing.T) {
	t.Parallel()
	pkgs := listPackages(t)
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages; run from the module root", len(pkgs))
	}
	for _, p := range pkgs {
		if p.ImportPath == strings.TrimSuffix(module, "/") {
			continue // this test's own package
		}
		if layerOf(p.ImportPath) == "" {
			t.Errorf("%s has no layer: add it to layers (and to the README's Layout)", p.ImportPath)
			continue
		}
		for _, imp := range p.Imports {
			if rel, ok := strings.CutPrefix(imp, module); ok && !allowed(p.ImportPath, rel) {
				t.Errorf("%s imports %s: an arrow that points up or sideways (allowed: %v)", p.ImportPath, rel, layers[layerOf(p.ImportPath)])
			}
		}
		if slices.Contains(gormAllowed, p.ImportPath) {
			continue
		}
		for _, imp := range slices.Concat(p.Imports, p.TestImports, p.XTestImports) {
			if strings.HasPrefix(imp, "gorm.io/") {
				t.Errorf("%s imports %s: only %v may use GORM", p.ImportPath, imp, gormAllowed)
			}
		}
	}
}
