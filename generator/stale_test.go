package generator

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/tools/go/packages"

	"github.com/dlock-go/dlock/internal/gentest"
)

const staleSrc = `package p

import "context"

//dlock:fanout key="u:{id}"
func loadUser(ctx context.Context, id int) (string, error) { return "", nil }

//dlock:once key="job"
func job(ctx context.Context) error { return nil }
`

func generateInto(t *testing.T, dir string, patterns ...string) *Result {
	t.Helper()
	if len(patterns) == 0 {
		patterns = []string{"./..."}
	}
	res, err := Generate(Config{Dir: dir, Patterns: patterns, Env: gentest.Env()})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Diagnostics) > 0 {
		t.Fatalf("diagnostics: %v", res.Diagnostics)
	}
	for _, f := range res.Files {
		if f.Content == nil {
			os.Remove(f.Path)
		} else if err := os.WriteFile(f.Path, f.Content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return res
}

// Regenerating over its own output works with every kind of package
// pattern: the generated files are hidden from type checking whatever
// pattern named their packages.
func TestGenerate_regeneratesOverItsOutputWithAnyPattern(t *testing.T) {
	dir := gentest.Module(t, map[string]string{"pa/p.go": staleSrc, "pb/p.go": staleSrc})
	first := generateInto(t, dir)
	for _, pats := range [][]string{{"./..."}, {"./p..."}, {"./pa", "./pb"}, {"example.com/m/..."}, {"./pa/..."}} {
		res := generateInto(t, dir, pats...)
		if len(res.Files) == 0 || !bytes.Equal(res.Files[0].Content, first.Files[0].Content) {
			t.Errorf("patterns %v: regenerated %d files; want the same output", pats, len(res.Files))
		}
	}
}

// A changed signature makes the stale dlock_gen.go fail to compile, with
// the guard pointing at it; regenerating still works and fixes the build.
func TestGenerate_staleGuardAndRegeneration(t *testing.T) {
	dir := gentest.Module(t, map[string]string{"p/p.go": staleSrc})
	generateInto(t, dir)
	if out, err := gentest.Go(t, dir, "build", "./..."); err != nil {
		t.Fatalf("build after generate: %v\n%s", err, out)
	}
	changed := strings.Replace(staleSrc, "id int)", "id int, region string)", 1)
	if err := os.WriteFile(filepath.Join(dir, "p", "p.go"), []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := gentest.Go(t, dir, "build", "./...")
	if err == nil || !strings.Contains(out, FileName) {
		t.Fatalf("build with a stale %s: err = %v, output:\n%s\nwant a failure in %s", FileName, err, out, FileName)
	}
	res := generateInto(t, dir)
	if !bytes.Contains(res.Files[0].Content, []byte("region string")) {
		t.Fatalf("regenerated file lacks the new parameter:\n%s", res.Files[0].Content)
	}
	if out, err := gentest.Go(t, dir, "build", "./..."); err != nil {
		t.Fatalf("build after regenerating: %v\n%s", err, out)
	}
	// With no directive left, the generated file is removed.
	plain := "package p\n\nfunc F() {}\n"
	os.WriteFile(filepath.Join(dir, "p", "p.go"), []byte(plain), 0o644)
	res = generateInto(t, dir)
	if len(res.Files) != 1 || res.Files[0].Content != nil {
		t.Fatalf("files with no directives left = %+v; want one removal", res.Files)
	}
	if _, err := os.Stat(filepath.Join(dir, "p", FileName)); !os.IsNotExist(err) {
		t.Fatalf("%s still there: %v", FileName, err)
	}
}

// The output does not depend on the order the files were loaded in.
func TestGenerate_deterministicAcrossFileOrder(t *testing.T) {
	dir := gentest.Module(t, map[string]string{
		"p/a.go": strings.Replace(staleSrc, "//dlock:once key=\"job\"\nfunc job(ctx context.Context) error { return nil }\n", "", 1),
		"p/b.go": "package p\n\nimport \"context\"\n\n//dlock:once key=\"job\"\nfunc job(ctx context.Context) error { return nil }\n",
	})
	pkgs, err := packages.Load(&packages.Config{
		Mode: packages.NeedName | packages.NeedFiles | packages.NeedSyntax | packages.NeedTypes | packages.NeedTypesInfo,
		Dir:  dir, Env: gentest.Env(),
	}, "./p")
	if err != nil || len(pkgs) != 1 {
		t.Fatal(err)
	}
	gen := func(pkg *packages.Package) (*File, []Diagnostic) {
		cp := checkPackage(pkg, &sync.Map{})
		files, diags := cp.generate(nil, generatedByPath{pkg.PkgPath: generatedNames(cp.ws)})
		if len(files) != 1 {
			t.Fatalf("%d files; want 1", len(files))
		}
		return &files[0], diags
	}
	first, diags := gen(pkgs[0])
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	slices.Reverse(pkgs[0].Syntax)
	second, _ := gen(pkgs[0])
	if !bytes.Equal(first.Content, second.Content) {
		t.Fatalf("output differs with the files reversed:\n%s\n---\n%s", first.Content, second.Content)
	}
}

// P25: ./... on a module whose packages call each other's wrappers and
// decorators (under an import alias) works on the first run, before any
// generated file exists, and on every run after; the output builds, and
// -check's comparison agrees.
func TestGenerate_multiPackageModule(t *testing.T) {
	dir := gentest.Module(t, map[string]string{
		"store/store.go": `package store

import "context"

type Repo struct{}

//dlock:fanout key="u:{id}"
func loadUser(ctx context.Context, id int) (string, error) { return "", nil }

//dlock:once key="r:{id}"
func (r *Repo) Touch(ctx context.Context, id int) error { return nil }
`,
		"api/api.go": `package api

import (
	"context"

	st "example.com/m/store"
)

func Handle(ctx context.Context) (string, error) {
	d := st.NewRepoWithDlock(&st.Repo{}, nil)
	if err := d.Touch(ctx, 1); err != nil {
		return "", err
	}
	return st.LoadUser(ctx, 7)
}

//dlock:once key="h"
func handleAll(ctx context.Context) error {
	_, err := Handle(ctx)
	return err
}
`,
		"cmd/app/main.go": `package main

import (
	"context"

	"example.com/m/api"
	"example.com/m/store"
)

func main() {
	api.HandleAll(context.Background())
	store.LoadUser(context.Background(), 1)
}
`,
	})
	first := generateInto(t, dir)
	if len(first.Files) != 2 {
		t.Fatalf("first run wrote %d files; want store's and api's", len(first.Files))
	}
	again := generateInto(t, dir)
	for i := range first.Files {
		if !bytes.Equal(first.Files[i].Content, again.Files[i].Content) {
			t.Errorf("%s differs on the second run", first.Files[i].Path)
		}
	}
	if out, err := gentest.Go(t, dir, "build", "./..."); err != nil {
		t.Fatalf("go build ./...: %v\n%s", err, out)
	}
}

// P25: generated code compiles whatever the user's identifiers are:
// parameters named like the packages it imports, a blank parameter beside
// one named p1, package-level names that shadow its imports.
func TestGenerate_anyNamesCompile(t *testing.T) {
	dir := gentest.Module(t, map[string]string{
		"n/n.go": `package n

import (
	"context"
	"time"

	"example.com/m/other"
)

const msgpack = "not the package"

type node struct{ X int }

//dlock:fanout key="n:{node}"
func fetchNode(ctx context.Context, node string) (*node, error) { return nil, nil }

type errno int

func (e errno) Error() string { return "errno" }

var ErrNoEnt = errno(2)

var slices, cmp, strconv = 1, 2, 3

type Store struct{}

//dlock:fanout key="a:{time}:{strconv}"
func a(context context.Context, time string, strconv int, msgpack []byte, dlockrt bool) (time.Duration, error) {
	return 0, nil
}

//dlock:fanout
func b(ctx context.Context, _ int, p1 string, other other.T) (other.T, error) { return other, nil }

//dlock:once key="c:{slices}"
func (s *Store) C(cmp context.Context, slices int) error { return nil }

//dlock:semaphore limit=2
func d(ctx context.Context, _ string, _ int) error { return nil }
`,
		"other/other.go": "package other\n\ntype T struct{ X int }\n",
	})
	generateInto(t, dir)
	if out, err := gentest.Go(t, dir, "vet", "./..."); err != nil {
		t.Fatalf("go vet ./... of the generated code: %v\n%s", err, out)
	}
}

// P25: a dlock_gen.go without dlockgen's header is never overwritten: the
// run fails with a diagnostic naming it, and the file is unchanged.
func TestGenerate_neverOverwritesAHandWrittenFile(t *testing.T) {
	hand := "package p\n\n// Hand-written, unluckily named.\nfunc helper() {}\n"
	dir := gentest.Module(t, map[string]string{
		"p/p.go":         "package p\n\nimport \"context\"\n\n//dlock:once\nfunc job(ctx context.Context) error { return nil }\n",
		"p/dlock_gen.go": hand,
	})
	res, err := Generate(Config{Dir: dir, Patterns: []string{"./..."}, Env: gentest.Env()})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Files) != 0 || len(res.Diagnostics) != 1 || !strings.Contains(res.Diagnostics[0].Msg, "was not written by dlockgen") {
		t.Fatalf("files %d, diagnostics %v; want none and one naming the hand-written file", len(res.Files), res.Diagnostics)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "p", FileName)); string(b) != hand {
		t.Fatal("the hand-written file changed")
	}
}

// P17: one package's mistake means no file at all, for any package: the
// result of a run with diagnostics carries none to write.
func TestGenerate_diagnosticsMeanNoFiles(t *testing.T) {
	dir := gentest.Module(t, map[string]string{
		"good/good.go": "package good\n\nimport \"context\"\n\n//dlock:once\nfunc job(ctx context.Context) error { return nil }\n",
		"bad/bad.go":   "package bad\n\nimport \"context\"\n\n//dlock:once ttl=soon\nfunc job(ctx context.Context) error { return nil }\n",
	})
	res, err := Generate(Config{Dir: dir, Patterns: []string{"./..."}, Env: gentest.Env()})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Diagnostics) == 0 || len(res.Files) != 0 {
		t.Fatalf("diagnostics %v, %d files; want the bad package's diagnostic and no file", res.Diagnostics, len(res.Files))
	}
}

// P34: a result type (here of another package) that gains, loses, renames
// or retypes a field after go generate makes the stale dlock_gen.go fail
// to compile, at a line that says to run go generate; a field's tag too.
// Regenerating fixes the build.
func TestGenerate_staleResultTypeDoesNotCompile(t *testing.T) {
	const user = "package model\n\ntype User struct {\n\tName string\n\tAge  int `json:\"age\"`\n}\n"
	const svc = "package svc\n\nimport (\n\t\"context\"\n\n\t\"example.com/m/model\"\n)\n\n" +
		"//dlock:fanout key=\"u:{id}\"\nfunc load(ctx context.Context, id int) (model.User, error) { return model.User{}, nil }\n"
	for _, change := range []struct{ name, from, to string }{
		{"field added", "\tName string\n", "\tName string\n\tEmail string\n"},
		{"field removed", "\tName string\n", ""},
		{"field renamed", "\tName string\n", "\tFullName string\n"},
		{"field retyped", "\tAge  int", "\tAge  int64"},
		{"tag changed", "`json:\"age\"`", "`json:\"age\" msgpack:\"-\"`"},
	} {
		t.Run(change.name, func(t *testing.T) {
			dir := gentest.Module(t, map[string]string{"model/user.go": user, "svc/svc.go": svc})
			generateInto(t, dir)
			if out, err := gentest.Go(t, dir, "build", "./..."); err != nil {
				t.Fatalf("build after generate: %v\n%s", err, out)
			}
			changed := strings.Replace(user, change.from, change.to, 1)
			if changed == user {
				t.Fatalf("the change %q did not apply", change.name)
			}
			if err := os.WriteFile(filepath.Join(dir, "model", "user.go"), []byte(changed), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := gentest.Go(t, dir, "build", "./...")
			if err == nil {
				t.Fatalf("build with a stale %s passed; want a failure", FileName)
			}
			line := failingLine(t, dir, out)
			if !strings.Contains(line.comment, "run go generate") {
				t.Errorf("the build failed at %s:%d, whose comment %q does not say to run go generate; output:\n%s", FileName, line.n, line.comment, out)
			}
			generateInto(t, dir)
			if out, err := gentest.Go(t, dir, "build", "./..."); err != nil {
				t.Fatalf("build after regenerating: %v\n%s", err, out)
			}
		})
	}
}

type genLine struct {
	n       int
	comment string // the comment lines just above the failing declaration
}

// failingLine finds the first svc/dlock_gen.go line go build reported and
// the comment above the declaration it is in.
func failingLine(t *testing.T, dir, out string) genLine {
	t.Helper()
	_, rest, ok := strings.Cut(out, FileName+":")
	if !ok {
		t.Fatalf("go build did not fail in %s:\n%s", FileName, out)
	}
	num, _, _ := strings.Cut(rest, ":")
	n, err := strconv.Atoi(num)
	if err != nil {
		t.Fatalf("no line number after %s in:\n%s", FileName, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "svc", FileName))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	i := n - 1
	for i > 0 && !strings.HasPrefix(lines[i], "var ") && !strings.HasPrefix(lines[i], "func ") {
		i--
	}
	var comment []string
	for j := i - 1; j >= 0 && strings.HasPrefix(lines[j], "//"); j-- {
		comment = append([]string{lines[j]}, comment...)
	}
	return genLine{n, strings.Join(comment, " ")}
}

// P34 where the fields cannot be named in the generated package (a blank
// field of another package): the stale program builds, but stops at start
// with a panic that says to run go generate, rather than drop the field.
func TestGenerate_staleUnnamableResultTypeStopsAtStart(t *testing.T) {
	const stat = "package model\n\ntype Stat struct {\n\t_     int32\n\tCount int\n}\n"
	const svc = "package svc\n\nimport (\n\t\"context\"\n\n\t\"example.com/m/model\"\n)\n\n" +
		"//dlock:fanout\nfunc stat(ctx context.Context) (model.Stat, error) { return model.Stat{}, nil }\n"
	const main = "package main\n\nimport _ \"example.com/m/svc\"\n\nfunc main() { println(\"started\") }\n"
	dir := gentest.Module(t, map[string]string{"model/stat.go": stat, "svc/svc.go": svc, "cmd/x/main.go": main})
	generateInto(t, dir)
	if out, err := gentest.Go(t, dir, "run", "./cmd/x"); err != nil || !strings.Contains(out, "started") {
		t.Fatalf("go run after generate: %v\n%s", err, out)
	}
	changed := strings.Replace(stat, "\tCount int\n", "\tCount int\n\tMax   int\n", 1)
	if err := os.WriteFile(filepath.Join(dir, "model", "stat.go"), []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := gentest.Go(t, dir, "run", "./cmd/x")
	if err == nil || strings.Contains(out, "started") || !strings.Contains(out, "run go generate") {
		t.Fatalf("go run with a stale %s: err = %v, output:\n%s\nwant a panic at start saying to run go generate", FileName, err, out)
	}
	generateInto(t, dir)
	if out, err := gentest.Go(t, dir, "run", "./cmd/x"); err != nil || !strings.Contains(out, "started") {
		t.Fatalf("go run after regenerating: %v\n%s", err, out)
	}
}
