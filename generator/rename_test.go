package generator

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dlock-go/dlock/internal/gentest"
)

// Renaming an annotated function (or its package or type) changes its key
// space: dlockgen warns, naming the space= that keeps the old one; with it,
// no warning. A wrapper whose space stays is not mentioned.
func TestGenerate_renameWarnsOfTheKeySpace(t *testing.T) {
	src := func(fn, directive string) string {
		return "package jobs\n\nimport \"context\"\n\n" + directive + "\nfunc " + fn + "(ctx context.Context) error { return nil }\n\n" +
			"//dlock:once\nfunc stays(ctx context.Context) error { return nil }\n"
	}
	dir := gentest.Module(t, map[string]string{"jobs/jobs.go": src("reindex", "//dlock:once")})
	if res := generateInto(t, dir); len(res.Warnings) != 0 {
		t.Fatalf("first generation warned: %v", res.Warnings)
	}
	os.WriteFile(filepath.Join(dir, "jobs", "jobs.go"), []byte(src("rebuildIndex", "//dlock:once")), 0o644)
	res := generateInto(t, dir)
	if len(res.Warnings) != 1 {
		t.Fatalf("warnings after the rename: %v; want one", res.Warnings)
	}
	w := res.Warnings[0].String()
	for _, want := range []string{"jobs.go:", "warning:", "RebuildIndex", `"example.com/m/jobs.reindex"`, `space="example.com/m/jobs.reindex"`} {
		if !strings.Contains(w, want) {
			t.Errorf("warning %q does not say %q", w, want)
		}
	}
	// Pinned to the old space (and back to the old file): no warning.
	os.WriteFile(filepath.Join(dir, "jobs", "jobs.go"), []byte(src("reindex", "//dlock:once")), 0o644)
	generateInto(t, dir)
	os.WriteFile(filepath.Join(dir, "jobs", "jobs.go"), []byte(src("rebuildIndex", `//dlock:once space=example.com/m/jobs.reindex`)), 0o644)
	if res := generateInto(t, dir); len(res.Warnings) != 0 {
		t.Fatalf("warnings with the old space pinned: %v", res.Warnings)
	}
}

// Moving a package changes the key space of every wrapper in it, each
// found by its unchanged name: one warning each, naming its own old space.
func TestGenerate_movingAPackageWarnsOfEachKeySpace(t *testing.T) {
	src := "package jobs\n\nimport \"context\"\n\n//dlock:once\nfunc reindex(ctx context.Context) error { return nil }\n\n" +
		"//dlock:once\nfunc vacuum(ctx context.Context) error { return nil }\n"
	dir := gentest.Module(t, map[string]string{"jobs/jobs.go": src})
	generateInto(t, dir)
	if err := os.MkdirAll(filepath.Join(dir, "internal"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "jobs"), filepath.Join(dir, "internal", "jobs")); err != nil {
		t.Fatal(err)
	}
	res := generateInto(t, dir)
	if len(res.Warnings) != 2 {
		t.Fatalf("warnings after the move: %v; want two", res.Warnings)
	}
	for i, fn := range []string{"reindex", "vacuum"} {
		w := res.Warnings[i].String()
		for _, want := range []string{`"example.com/m/jobs.` + fn + `"`, `"example.com/m/internal/jobs.` + fn + `"`, `space="example.com/m/jobs.` + fn + `"`} {
			if !strings.Contains(w, want) {
				t.Errorf("warning %q does not say %q", w, want)
			}
		}
	}
}

// A method's key space names its type in parentheses ("pkg.(Store).Get"):
// regenerating unchanged warns of nothing, and renaming the type warns
// with the whole old space.
func TestGenerate_renamingAMethodsTypeWarnsWithTheWholeSpace(t *testing.T) {
	src := func(typ string) string {
		return "package users\n\nimport \"context\"\n\ntype " + typ + " struct{}\n\n" +
			"//dlock:once\nfunc (s *" + typ + ") Get(ctx context.Context) error { return nil }\n"
	}
	dir := gentest.Module(t, map[string]string{"users/users.go": src("Store")})
	generateInto(t, dir)
	if res := generateInto(t, dir); len(res.Warnings) != 0 {
		t.Fatalf("regenerating an unchanged method wrapper warned: %v", res.Warnings)
	}
	os.WriteFile(filepath.Join(dir, "users", "users.go"), []byte(src("Repo")), 0o644)
	res := generateInto(t, dir)
	if len(res.Warnings) != 1 {
		t.Fatalf("warnings after renaming the type: %v; want one", res.Warnings)
	}
	if w, want := res.Warnings[0].String(), `space="example.com/m/users.(Store).Get"`; !strings.Contains(w, want) {
		t.Errorf("warning %q does not say %q", w, want)
	}
}
