package generator

import (
	"bytes"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/tools/txtar"

	"github.com/dlock-go/dlock/internal/gentest"
)

var update = flag.Bool("update", false, "rewrite the expected sections of testdata/generate/*.txtar")

// Golden cases: each txtar in testdata/generate holds a module's files
// (sections ending in .go) and the expected outcome: a "dlock_gen.go"
// section per package (named <dir>/dlock_gen.go), or a "diagnostics"
// section with the exact file:line:col: message lines.
func TestGenerate_golden(t *testing.T) {
	cases, _ := filepath.Glob(filepath.Join(gentest.Root(), "testdata", "generate", "*.txtar"))
	if len(cases) == 0 {
		t.Fatal("no golden cases found")
	}
	for _, path := range cases {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txtar"), func(t *testing.T) {
			ar, err := txtar.ParseFile(path)
			if err != nil {
				t.Fatal(err)
			}
			files := map[string]string{}
			for _, f := range ar.Files {
				if strings.HasSuffix(f.Name, ".go") && !strings.HasSuffix(f.Name, FileName) {
					files[f.Name] = string(f.Data)
				}
			}
			dir := gentest.Module(t, files)
			res, err := Generate(Config{Dir: dir, Patterns: []string{"./..."}, Env: gentest.Env()})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			if len(res.Diagnostics) > 0 {
				var b strings.Builder
				for _, d := range res.Diagnostics {
					rel, _ := filepath.Rel(dir, d.Pos.Filename)
					d.Pos.Filename = rel
					b.WriteString(d.String() + "\n")
				}
				got["diagnostics"] = b.String()
			}
			for _, f := range res.Files {
				rel, _ := filepath.Rel(dir, f.Path)
				got[rel] = string(f.Content)
			}
			if *update {
				var kept []txtar.File
				for _, f := range ar.Files {
					if _, isOut := got[f.Name]; !isOut && f.Name != "diagnostics" && !strings.HasSuffix(f.Name, FileName) {
						kept = append(kept, f)
					}
				}
				for _, name := range slices.Sorted(maps.Keys(got)) {
					kept = append(kept, txtar.File{Name: name, Data: []byte(got[name])})
				}
				ar.Files = kept
				if err := os.WriteFile(path, txtar.Format(ar), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want := map[string]string{}
			for _, f := range ar.Files {
				if f.Name == "diagnostics" || strings.HasSuffix(f.Name, FileName) {
					want[f.Name] = string(f.Data)
				}
			}
			for name, w := range want {
				if got[name] != w {
					t.Errorf("%s:\n--- got\n%s\n--- want\n%s", name, got[name], w)
				}
			}
			for name := range got {
				if _, ok := want[name]; !ok {
					t.Errorf("unexpected output %s:\n%s", name, got[name])
				}
			}
			if len(res.Diagnostics) > 0 {
				return
			}
			// Good cases: the output builds and vets, and generating again
			// gives the same bytes.
			for _, f := range res.Files {
				if err := os.WriteFile(f.Path, f.Content, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if out, err := gentest.Go(t, dir, "vet", "./..."); err != nil {
				t.Fatalf("go vet of the generated code: %v\n%s", err, out)
			}
			again, err := Generate(Config{Dir: dir, Patterns: []string{"./..."}, Env: gentest.Env()})
			if err != nil || len(again.Diagnostics) > 0 || len(again.Files) != len(res.Files) {
				t.Fatalf("regenerating over the written files: %v %v", err, again.Diagnostics)
			}
			for i := range res.Files {
				if !bytes.Equal(res.Files[i].Content, again.Files[i].Content) {
					t.Fatalf("second generation of %s differs", res.Files[i].Path)
				}
			}
		})
	}
}
