package generator

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dlock-go/dlock/internal/gentest"
)

// P25: wrappers build under exactly the constraints of the file that
// declares their function: a directive in x_linux.go or a //go:build pro
// file goes into a file with the same constraints, dlock_gen.go is the same
// whatever GOOS and tags dlockgen runs with, and -check agrees under any
// of them.
func TestGenerate_buildConstraints(t *testing.T) {
	dir := gentest.Module(t, map[string]string{
		"p/common.go": "package p\n\nimport \"context\"\n\nvar ErrCommon = errNew(\"common\")\n\n//dlock:once\nfunc everywhere(ctx context.Context) error { return nil }\n",
		"p/errs.go":   "package p\n\nimport \"errors\"\n\nfunc errNew(s string) error { return errors.New(s) }\n",
		"p/x_linux.go": `package p

import "context"

type LinuxStat struct{ Load float64 }

var ErrLinux = errNew("linux")

//dlock:fanout
func linuxOnly(ctx context.Context) (LinuxStat, error) { return LinuxStat{}, nil }
`,
		"p/linux_amd64.go": "package p\n\nimport \"context\"\n\n// go build reads only amd64 in this name.\n//\n//dlock:once\nfunc amdOnly(ctx context.Context) error { return nil }\n",
		"p/old.go":         "// +build !windows\n\npackage p\n\nimport \"context\"\n\n//dlock:once\nfunc notWindows(ctx context.Context) error { return nil }\n",
		"p/pro.go": `//go:build pro

package p

import "context"

//dlock:fanout key="pro"
func proOnly(ctx context.Context) (LinuxStatOrNot, error) { return LinuxStatOrNot{}, nil }

type LinuxStatOrNot struct{ N int }
`,
	})
	gen := func(env []string, tags ...string) *Result {
		t.Helper()
		res, err := Generate(Config{Dir: dir, Patterns: []string{"./..."}, Env: append(gentest.Env(), env...), Tags: tags})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Diagnostics) > 0 {
			t.Fatalf("diagnostics: %v", res.Diagnostics)
		}
		return res
	}
	write := func(res *Result) {
		for _, f := range res.Files {
			if f.Content == nil {
				t.Fatalf("%s removed", f.Path)
			}
			os.WriteFile(f.Path, f.Content, 0o644)
		}
	}
	linux := []string{"GOOS=linux", "GOARCH=amd64"}
	darwin := []string{"GOOS=darwin", "GOARCH=arm64"}
	write(gen(linux))
	write(gen(linux, "pro"))
	for name, build := range map[string]string{"dlock_gen.go": "", "dlock_gen.x_linux.go": "//go:build linux\n",
		"dlock_gen.pro.go": "//go:build pro\n", "dlock_gen.linux_amd64.go": "//go:build amd64\n", "dlock_gen.old.go": "//go:build !windows\n"} {
		b, err := os.ReadFile(filepath.Join(dir, "p", name))
		if err != nil {
			t.Fatalf("%s not written: %v", name, err)
		}
		if !bytes.Contains(b, []byte(build)) || (build == "" && bytes.Contains(b, []byte("//go:build"))) {
			t.Fatalf("%s lacks its constraint %q:\n%s", name, build, b)
		}
	}
	main, _ := os.ReadFile(filepath.Join(dir, "p", FileName))
	if bytes.Contains(main, []byte("ErrLinux")) || !bytes.Contains(main, []byte("ErrCommon")) {
		t.Fatalf("dlock_gen.go registers sentinels of constrained files, or misses its own:\n%s", main)
	}
	// Every configuration builds, and agrees with the files on disk.
	for _, cfg := range []struct {
		env  []string
		tags []string
	}{{linux, nil}, {darwin, nil}, {linux, []string{"pro"}}, {[]string{"GOOS=windows", "GOARCH=amd64"}, nil}} {
		args := []string{"build"}
		if cfg.tags != nil {
			args = append(args, "-tags", strings.Join(cfg.tags, ","))
		}
		cmd := append(args, "./...")
		if out, err := gentest.GoEnv(t, dir, cfg.env, cmd...); err != nil {
			t.Fatalf("%v go %v: %v\n%s", cfg.env, cmd, err, out)
		}
		for _, f := range gen(cfg.env, cfg.tags...).Files {
			old, _ := os.ReadFile(f.Path)
			if f.Content == nil || !bytes.Equal(old, f.Content) {
				t.Errorf("%v tags %v: -check would report %s stale", cfg.env, cfg.tags, filepath.Base(f.Path))
			}
		}
	}
}

// A file that imports "C" builds only with cgo: its wrappers go into a file
// constrained by cgo (and by the file's own //go:build line), found through
// cmd/cgo's translation that go/packages loads in its place; with cgo off,
// everything builds and -check agrees. Before, its directives were skipped
// without a word (the translation lives in the build cache).
func TestGenerate_cgoFile(t *testing.T) {
	dir := gentest.Module(t, map[string]string{
		"p/plain.go": "package p\n\nimport \"context\"\n\n//dlock:once\nfunc plain(ctx context.Context) error { return nil }\n",
		"p/c.go": `//go:build !windows

package p

// int two(void) { return 2; }
import "C"

import (
	"context"
	"errors"
)

var ErrCgo = errors.New("cgo")

// Pair is a type of the cgo file.
type Pair struct{ N int }

//dlock:fanout key="two"
func two(ctx context.Context) (Pair, error) { return Pair{N: int(C.two())}, nil }
`,
	})
	if out, _ := gentest.Go(t, dir, "env", "CGO_ENABLED"); strings.TrimSpace(out) != "1" {
		if os.Getenv("CI") != "" {
			t.Fatalf("cgo is disabled (go env CGO_ENABLED = %q): install a C compiler (apt-get install gcc)", strings.TrimSpace(out))
		}
		t.Skip("cgo is disabled here (no C compiler)")
	}
	gen := func(env ...string) *Result {
		t.Helper()
		res, err := Generate(Config{Dir: dir, Patterns: []string{"./..."}, Env: append(gentest.Env(), env...)})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Diagnostics) > 0 {
			t.Fatalf("diagnostics: %v", res.Diagnostics)
		}
		return res
	}
	for _, f := range gen().Files {
		os.WriteFile(f.Path, f.Content, 0o644)
	}
	cg, err := os.ReadFile(filepath.Join(dir, "p", "dlock_gen.c.go"))
	if err != nil {
		t.Fatalf("the cgo file's wrappers were not written: %v", err)
	}
	if !bytes.Contains(cg, []byte("//go:build !windows && cgo\n")) || !bytes.Contains(cg, []byte("func Two(")) {
		t.Fatalf("dlock_gen.c.go lacks its constraint or its wrapper:\n%s", cg)
	}
	main, _ := os.ReadFile(filepath.Join(dir, "p", FileName))
	if bytes.Contains(main, []byte("ErrCgo")) || bytes.Contains(main, []byte("func Two(")) {
		t.Fatalf("dlock_gen.go holds what only builds with cgo:\n%s", main)
	}
	for _, env := range [][]string{nil, {"CGO_ENABLED=0"}} {
		if out, err := gentest.GoEnv(t, dir, env, "vet", "./..."); err != nil {
			t.Fatalf("%v go vet: %v\n%s", env, err, out)
		}
		for _, f := range gen(env...).Files {
			old, _ := os.ReadFile(f.Path)
			if f.Content == nil || !bytes.Equal(old, f.Content) {
				t.Errorf("%v: -check would report %s stale", env, filepath.Base(f.Path))
			}
		}
	}
}

// Another package's type declared in a constrained file has other fields
// on other platforms (syscall.Stat_t), or none at all (syscall.Signal is
// declared for unix, and plan9 has none): a wrapper of an unconstrained
// file carrying it is refused under every configuration (so -check never
// flips between platforms); one of a file with constraints of its own is
// not.
func TestGenerate_platformStructOfAnotherPackage(t *testing.T) {
	dir := gentest.Module(t, map[string]string{
		"p/p.go": `package p

import (
	"context"
	"syscall"
)

type Facts struct {
	Name string
	St   syscall.Stat_t
}

//dlock:fanout key="info"
func info(ctx context.Context) (Facts, error) { return Facts{}, nil }

//dlock:fanout key="sig"
func sig(ctx context.Context) (syscall.Signal, error) { return 0, nil }
`,
		"q/q_linux.go": `package q

import (
	"context"
	"syscall"
)

//dlock:fanout key="stat"
func stat(ctx context.Context) (syscall.Stat_t, error) { return syscall.Stat_t{}, nil }
`,
	})
	for _, env := range [][]string{{"GOOS=linux", "GOARCH=amd64"}, {"GOOS=darwin", "GOARCH=arm64"}} {
		res, err := Generate(Config{Dir: dir, Patterns: []string{"./..."}, Env: append(gentest.Env(), env...)})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Diagnostics) != 2 || !strings.Contains(res.Diagnostics[0].Msg, "info uses syscall.Stat_t, declared in ztypes_") ||
			!strings.Contains(res.Diagnostics[1].Msg, "sig uses syscall.Signal, declared in syscall_unix.go, which has build constraints") {
			t.Errorf("%v: diagnostics %v; want info's syscall.Stat_t and sig's syscall.Signal (declared for unix only)", env, res.Diagnostics)
		}
	}
	res, err := Generate(Config{Dir: dir, Patterns: []string{"./q"}, Env: append(gentest.Env(), "GOOS=linux", "GOARCH=amd64")})
	if err != nil || len(res.Diagnostics) > 0 || len(res.Files) != 1 {
		t.Fatalf("a linux file's wrapper carrying syscall.Stat_t: %v %v, %d files", err, res.Diagnostics, len(res.Files))
	}
}
