package generator

import (
	"go/ast"
	"go/build/constraint"
	"path/filepath"
	"strings"
)

// Build constraints. A wrapper builds under exactly the constraints of the
// file that declares its function: the wrappers of unconstrained files go
// into dlock_gen.go, those of a file F.go with a //go:build line or a
// GOOS/GOARCH file name into dlock_gen_F.go, which copies F's //go:build
// line and, ending like F's name, has its implicit GOOS/GOARCH too. So
// dlock_gen.go is the same whatever GOOS and tags dlockgen runs with, and a
// file for a configuration that is not being built is left alone.

// outputFor returns the generated file for wrappers of the source file
// path ("" when it has no constraints) and its //go:build line.
func outputFor(path string, f *ast.File) (suffix, buildLine string) {
	buildLine = goBuildLine(f)
	base := strings.TrimSuffix(filepath.Base(path), ".go")
	if buildLine == "" && !hasGOOSArchSuffix(base) {
		return "", ""
	}
	return base, buildLine
}

// outputName is the generated file's name for a suffix from outputFor.
func outputName(suffix string) string {
	if suffix == "" {
		return FileName
	}
	return "dlock_gen_" + suffix + ".go"
}

// isOutputName reports whether name is a generated file's name, and the
// source file's base name it belongs to ("" for dlock_gen.go).
func isOutputName(name string) (suffix string, ok bool) {
	if name == FileName {
		return "", true
	}
	if s, found := strings.CutPrefix(name, "dlock_gen_"); found && strings.HasSuffix(s, ".go") {
		return strings.TrimSuffix(s, ".go"), true
	}
	return "", false
}

// goBuildLine returns the file's //go:build line, or "".
func goBuildLine(f *ast.File) string {
	for _, g := range f.Comments {
		if g.Pos() > f.Package {
			break
		}
		for _, c := range g.List {
			if constraint.IsGoBuild(c.Text) {
				return c.Text
			}
		}
	}
	return ""
}

// hasGOOSArchSuffix reports whether a file base name (without .go) ends in
// _GOOS, _GOARCH or _GOOS_GOARCH, which constrain it as go build does.
func hasGOOSArchSuffix(base string) bool {
	parts := strings.Split(base, "_")
	n := len(parts)
	if n >= 2 && parts[n-1] == "test" {
		parts, n = parts[:n-1], n-1
	}
	if n < 2 {
		return false
	}
	last := parts[n-1]
	return knownOS[last] || knownArch[last]
}

// The GOOS and GOARCH values go build knows (go/build's syslist).
var knownOS = set("aix android darwin dragonfly freebsd hurd illumos ios js linux nacl netbsd openbsd plan9 solaris wasip1 windows zos")

var knownArch = set("386 amd64 amd64p32 arm armbe arm64 arm64be loong64 mips mipsle mips64 mips64le mips64p32 mips64p32le ppc ppc64 ppc64le riscv riscv64 s390 s390x sparc sparc64 wasm")

func set(words string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(words) {
		m[w] = true
	}
	return m
}
