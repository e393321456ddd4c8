package generator

import (
	"fmt"
	"go/ast"
	"go/build"
	"go/build/constraint"
	"go/parser"
	"go/token"
	"go/types"
	"path/filepath"
	"strings"
)

// Build constraints. A wrapper builds under exactly the constraints of the
// file that declares its function: the wrappers of unconstrained files go
// into dlock_gen.go, those of a file F.go with a //go:build line or a
// GOOS/GOARCH file name into dlock_gen.F.go, whose //go:build line states
// F's whole constraint (go build reads no GOOS/GOARCH in that name). So
// dlock_gen.go is the same whatever GOOS and tags dlockgen runs with, and a
// file for a configuration that is not being built is left alone.

// outputFor returns the output suffix for wrappers of the source file at
// path ("" when it has no constraints) and the //go:build line of its
// output: the conjunction of the file name's GOOS/GOARCH constraint (as go
// build reads it), the file's own //go:build (or // +build) lines, and
// cgo for a file that imports "C".
func outputFor(path string, f *ast.File, cgo bool) (suffix, buildLine string) {
	var exprs []constraint.Expr
	if x := nameConstraint(filepath.Base(path)); x != nil {
		exprs = append(exprs, x)
	}
	if x := fileConstraint(f); x != nil {
		exprs = append(exprs, x)
	}
	if cgo { // a file that imports "C" builds only with cgo enabled
		exprs = append(exprs, &constraint.TagExpr{Tag: "cgo"})
	}
	if len(exprs) == 0 {
		return "", ""
	}
	x := exprs[0]
	for _, y := range exprs[1:] {
		x = &constraint.AndExpr{X: x, Y: y}
	}
	return strings.TrimSuffix(filepath.Base(path), ".go"), "//go:build " + x.String()
}

// outputName is the generated file's name for a suffix from outputFor. A
// constrained file's output is named dlock_gen.<source>.go: go build reads
// no GOOS/GOARCH in that name, so its //go:build line says everything.
func outputName(suffix string) string {
	if suffix == "" {
		return FileName
	}
	return "dlock_gen." + suffix + ".go"
}

// isOutputName reports whether name is a generated file's name, and the
// source file's base name it belongs to ("" for dlock_gen.go).
func isOutputName(name string) (suffix string, ok bool) {
	if name == FileName {
		return "", true
	}
	if s, found := strings.CutPrefix(name, "dlock_gen."); found && strings.HasSuffix(s, ".go") {
		return strings.TrimSuffix(s, ".go"), true
	}
	return "", false
}

// fileConstraint returns the file's //go:build expression, or that of its
// // +build lines, or nil.
func fileConstraint(f *ast.File) constraint.Expr {
	var plus []constraint.Expr
	for _, g := range f.Comments {
		if g.Pos() > f.Package {
			break
		}
		for _, c := range g.List {
			switch {
			case constraint.IsGoBuild(c.Text):
				if x, err := constraint.Parse(c.Text); err == nil {
					return x
				}
			case constraint.IsPlusBuild(c.Text):
				if x, err := constraint.Parse(c.Text); err == nil {
					plus = append(plus, x)
				}
			}
		}
	}
	if len(plus) == 0 {
		return nil
	}
	x := plus[0]
	for _, y := range plus[1:] {
		x = &constraint.AndExpr{X: x, Y: y}
	}
	return x
}

// nameConstraint returns the GOOS/GOARCH constraint that go build reads in
// a file name, or nil: the name is cut at its first '.', what precedes its
// first '_' is ignored, a trailing _test is dropped, and then it may end in
// _GOOS, _GOARCH or _GOOS_GOARCH.
func nameConstraint(name string) constraint.Expr {
	name, _, _ = strings.Cut(name, ".")
	i := strings.Index(name, "_")
	if i < 0 {
		return nil
	}
	l := strings.Split(name[i:], "_")
	if n := len(l); n > 0 && l[n-1] == "test" {
		l = l[:n-1]
	}
	n := len(l)
	tag := func(s string) constraint.Expr { return &constraint.TagExpr{Tag: s} }
	switch {
	case n >= 2 && knownOS[l[n-2]] && knownArch[l[n-1]]:
		return &constraint.AndExpr{X: tag(l[n-2]), Y: tag(l[n-1])}
	case n >= 1 && (knownOS[l[n-1]] || knownArch[l[n-1]]):
		return tag(l[n-1])
	}
	return nil
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

// checkConfigTypes diagnoses a wrapper of an unconstrained file whose
// signature uses a type of this package declared in a constrained file:
// dlock_gen.go would then differ, or not build, in other configurations.
func (c *checker) checkConfigTypes(ws []*wrapper, sources map[string]string) {
	for _, w := range ws {
		if w.out != "" {
			continue
		}
		seen := map[types.Type]bool{}
		for _, t := range append(append([]types.Type{}, w.results...), paramTypes(w.params)...) {
			if obj, what := c.constrainedType(t, sources, seen); obj != nil {
				file := filepath.Base(fileOf(c.pkg, obj.Pos()))
				c.diags = append(c.diags, Diagnostic{Pos: w.pos, Msg: fmt.Sprintf("%s uses %s, declared in %s, which has build constraints: move the function to a file with the same constraints", w.fn.Name(), what, file)})
				break
			}
		}
	}
}

// constrainedType returns an object that t's code depends on and that is
// declared in a file with build constraints, so that it may differ, or be
// missing, in other configurations: a type or alias of the package in a
// constrained file, the methods a type of the package carries itself with,
// or another package's type declared under a platform constraint
// (syscall.Stat_t in ztypes_linux_amd64.go). It says what the object is.
func (c *checker) constrainedType(t types.Type, sources map[string]string, seen map[types.Type]bool) (types.Object, string) {
	if seen[t] {
		return nil, ""
	}
	seen[t] = true
	here := func(obj types.Object) bool { return sources[fileOf(c.pkg, obj.Pos())] != "" }
	if a, ok := t.(*types.Alias); ok {
		if a.Obj().Pkg() == c.pkg.Types && here(a.Obj()) {
			return a.Obj(), c.typeString(a)
		}
		return c.constrainedType(types.Unalias(a), sources, seen)
	}
	switch u := t.(type) {
	case *types.Named:
		switch p := u.Obj().Pkg(); {
		case p == c.pkg.Types:
			if here(u.Obj()) {
				return u.Obj(), c.typeString(u)
			}
			if sc, _ := codecOf(u); sc != nil {
				for _, name := range []string{sc.enc, sc.dec} {
					if m := method(u, name); m != nil && here(m) {
						return m, u.Obj().Name() + "." + name
					}
				}
			}
		case p != nil:
			if c.platformFile(c.pkg.Fset.PositionFor(u.Obj().Pos(), false).Filename) {
				return u.Obj(), c.typeString(u)
			}
		}
		return c.constrainedType(u.Underlying(), sources, seen)
	case *types.Pointer:
		return c.constrainedType(u.Elem(), sources, seen)
	case *types.Slice:
		return c.constrainedType(u.Elem(), sources, seen)
	case *types.Array:
		return c.constrainedType(u.Elem(), sources, seen)
	case *types.Map:
		if obj, what := c.constrainedType(u.Key(), sources, seen); obj != nil {
			return obj, what
		}
		return c.constrainedType(u.Elem(), sources, seen)
	case *types.Struct:
		for i := 0; i < u.NumFields(); i++ {
			if obj, what := c.constrainedType(u.Field(i).Type(), sources, seen); obj != nil {
				return obj, what
			}
		}
	}
	return nil, ""
}

// platformFile reports whether the Go file at path builds only on some
// platforms or configurations: a GOOS/GOARCH in its name, or a //go:build
// line naming a tag other than a Go release's (go1.21: every build of
// this module has it).
func (c *checker) platformFile(path string) bool {
	if v, ok := c.platform.Load(path); ok {
		return v.(bool)
	}
	v := readPlatformFile(path)
	c.platform.Store(path, v)
	return v
}

func readPlatformFile(path string) bool {
	if path == "" {
		return false
	}
	if rest, ok := strings.CutPrefix(path, "$GOROOT/"); ok { // as export data records the standard library's files
		path = filepath.Join(build.Default.GOROOT, rest)
	}
	if nameConstraint(filepath.Base(path)) != nil {
		return true
	}
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.PackageClauseOnly|parser.ParseComments)
	if err != nil {
		return false
	}
	x := fileConstraint(f)
	return x != nil && namesTag(x, func(tag string) bool { return !strings.HasPrefix(tag, "go1.") })
}

// namesTag reports whether x names a tag for which is holds.
func namesTag(x constraint.Expr, is func(string) bool) bool {
	switch x := x.(type) {
	case *constraint.TagExpr:
		return is(x.Tag)
	case *constraint.NotExpr:
		return namesTag(x.X, is)
	case *constraint.AndExpr:
		return namesTag(x.X, is) || namesTag(x.Y, is)
	case *constraint.OrExpr:
		return namesTag(x.X, is) || namesTag(x.Y, is)
	}
	return false
}
