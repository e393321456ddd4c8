package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// codecs: the generated codec of examples/users.User against reflective
// msgpack, from that package's benchmark. Goal: >= 2x.
func codecs() []row {
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", "Codec_User", "-benchtime", "1s", "-count", strconv.Itoa(*rounds), "./examples/users")
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "codec benchmark: %v\n%s", err, out)
		return nil
	}
	ns := map[string][]float64{}
	re := regexp.MustCompile(`BenchmarkCodec_User/(\w+)-\d+\s+\d+\s+([\d.]+) ns/op`)
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		ns[m[1]] = append(ns[m[1]], v)
	}
	gen, ref := middle(ns["generated"]), middle(ns["reflective"])
	g := "codec round trip, examples/users.User"
	return []row{
		{group: g, name: "dlockgen typed codec", value: gen, unit: "ns", vs: "reflective", ratio: ref / gen, goal: ">= 2× faster"},
		{group: g, name: "msgpack Marshal/Unmarshal", value: ref, unit: "ns"},
	}
}

func middle(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	slices.Sort(vs)
	return vs[len(vs)/2]
}

// generatorTime: dlockgen on a synthetic module of 20 packages with 200
// annotated functions, against go vet on the same module. Goal: <= 1.2x.
func generatorTime() []row {
	root, _ := filepath.Abs("..")
	dir, err := os.MkdirTemp("", "dlockbench")
	if err != nil {
		return nil
	}
	defer os.RemoveAll(dir)
	mod, _ := os.ReadFile(filepath.Join(root, "go.mod"))
	reqs := string(mod)[strings.Index(string(mod), "require"):]
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/synth\n\ngo 1.26\n\nrequire github.com/dlock-go/dlock v0.0.0\n\n"+reqs+"\nreplace github.com/dlock-go/dlock => "+root+"\n"), 0o644)
	sum, _ := os.ReadFile(filepath.Join(root, "go.sum"))
	os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644)
	for p := range 20 {
		var b strings.Builder
		fmt.Fprintf(&b, "package p%d\n\nimport (\n\t\"context\"\n\t\"time\"\n)\n\ntype Row struct {\n\tID int64\n\tName string\n\tAt time.Time\n\tTags map[string]int\n}\n", p)
		for f := range 10 {
			fmt.Fprintf(&b, "\n//dlock:fanout key=\"r%d:{id}\"\nfunc load%d(ctx context.Context, id int64) ([]Row, error) { return nil, nil }\n", f, f)
		}
		os.MkdirAll(filepath.Join(dir, fmt.Sprintf("p%d", p)), 0o755)
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("p%d", p), "p.go"), []byte(b.String()), 0o644)
	}
	bin := filepath.Join(dir, "dlockgen")
	build := exec.Command("go", "build", "-o", bin, "./cmd/dlockgen")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build dlockgen: %v\n%s", err, out)
		return nil
	}
	env := append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off")
	timed := func(name string, args ...string) float64 {
		return median(func() float64 {
			cmd := exec.Command(name, args...)
			cmd.Dir, cmd.Env = dir, env
			start := time.Now()
			if out, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n%s", name, err, out)
			}
			return time.Since(start).Seconds()
		})
	}
	timed(bin, "./...") // write the files, warm the caches
	gen := timed(bin, "./...")
	vet := timed("go", "vet", "./...")
	g := "generator, 20 packages × 10 annotated functions"
	return []row{
		{group: g, name: "dlockgen ./...", value: gen, unit: "s", vs: "go vet", ratio: gen / vet, goal: "<= 1.2× go vet"},
		{group: g, name: "go vet ./...", value: vet, unit: "s"},
	}
}
