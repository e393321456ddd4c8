package generator

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"golang.org/x/tools/go/packages"
)

// checker collects the diagnostics of one package.
type checker struct {
	pkg      *packages.Package
	diags    []Diagnostic
	wire     wireTypes
	imports  map[string]importName // what the imports of the package's files (of every configuration, and its tests) declare
	platform *sync.Map             // platformFile's answers in this run (files may change between runs)
}

func (c *checker) errorf(pos token.Pos, format string, args ...any) {
	c.diags = append(c.diags, Diagnostic{Pos: c.pkg.Fset.Position(pos), Msg: fmt.Sprintf(format, args...)})
}

// checkedPackage is a package whose directives were checked.
type checkedPackage struct {
	pkg        *packages.Package
	c          *checker
	ws         []*wrapper
	dir        string
	testNames  map[string]token.Pos // names declared by the package's own _test.go files
	otherNames map[string]token.Pos // names declared by its files of other configurations
	sources    map[string]string    // source files of this build -> their output suffix
}

// checkPackage checks the directives of one package.
func checkPackage(pkg *packages.Package, platform *sync.Map) *checkedPackage {
	c := &checker{pkg: pkg, imports: map[string]importName{}, platform: platform}
	var ws []*wrapper
	files := make([]*ast.File, len(pkg.Syntax))
	copy(files, pkg.Syntax)
	sort.Slice(files, func(i, j int) bool {
		return fileOf(pkg, files[i].Pos()) < fileOf(pkg, files[j].Pos())
	})
	dir := pkg.Dir // the package's own directory (cgo files live in the build cache)
	sources := map[string]string{}
	for _, f := range files {
		name, cgo := sourceOf(pkg, f.Package)
		if dir == "" {
			dir = filepath.Dir(name)
		}
		if _, generated := isOutputName(filepath.Base(name)); generated || filepath.Dir(name) != dir {
			continue
		}
		header := f
		if cgo { // cgo's translation drops the source's //go:build lines
			if h, err := parser.ParseFile(pkg.Fset, name, nil, parser.ParseComments|parser.PackageClauseOnly); err == nil {
				header = h
			}
		}
		suffix, build := outputFor(name, header, cgo)
		sources[name] = suffix
		for _, w := range c.fileWrappers(f) {
			w.out, w.build = suffix, build
			ws = append(ws, w)
		}
	}
	if dir == "" && len(pkg.GoFiles) > 0 {
		dir = filepath.Dir(pkg.GoFiles[0])
	}
	cp := &checkedPackage{pkg: pkg, c: c, ws: ws, dir: dir, sources: sources}
	cp.testNames = c.testFiles(dir)
	cp.otherNames = c.otherConfigNames(dir, sources)
	c.checkConfigTypes(ws, sources)
	return cp
}

// generate emits the package's files (dlock_gen.go and one per constrained
// source file with directives), and removes those whose directives are
// gone, unless its load errors (other than references to names generated
// in this run) or its directives are wrong.
func (cp *checkedPackage) generate(hidden map[string]bool, names generatedByPath) ([]File, []Diagnostic) {
	pkg, c, ws := cp.pkg, cp.c, cp.ws
	if errs := loadErrors(pkg, names); len(errs) > 0 {
		return nil, append(c.diags, errs...)
	}
	if len(ws) > 0 {
		declared := maps.Clone(cp.testNames)
		maps.Copy(declared, cp.otherNames)
		c.checkCollisions(ws, declared, c.importNames())
		c.checkLocalNames(ws)
		c.checkKeySpaces(ws)
	}
	groups := map[string][]*wrapper{}
	sentinels := sentinelVars(pkg, cp.sources)
	if len(ws) > 0 && len(sentinels) > 0 {
		groups[""] = nil // dlock_gen.go registers the sentinels, even when every wrapper is constrained
	}
	recvOut := map[*types.Named]*wrapper{}
	for _, w := range ws {
		groups[w.out] = append(groups[w.out], w)
		if w.recv == nil {
			continue
		}
		if other, ok := recvOut[w.recv]; ok && other.out != w.out {
			c.diags = append(c.diags, Diagnostic{Pos: w.pos, Msg: fmt.Sprintf("methods of %s are annotated in files with different build constraints (%s and %s): keep them in files with the same constraints, since %sWithDlock is declared once",
				w.recv.Obj().Name(), filepath.Base(other.pos.Filename), filepath.Base(w.pos.Filename), w.recv.Obj().Name())})
		}
		recvOut[w.recv] = w
	}
	for suffix := range groups {
		out := filepath.Join(cp.dir, outputName(suffix))
		if _, err := os.Stat(out); err == nil && !hidden[out] && !ours(out) {
			c.diags = append(c.diags, Diagnostic{Pos: token.Position{Filename: out, Line: 1, Column: 1},
				Msg: filepath.Base(out) + " exists and was not written by dlockgen (it lacks the header \"" + Header + "\"): rename it; dlockgen never overwrites it"})
		}
	}
	if len(c.diags) > 0 {
		return nil, c.diags
	}
	var warnings []Diagnostic
	for suffix, g := range groups {
		warnings = append(warnings, renamedSpaces(filepath.Join(cp.dir, outputName(suffix)), g)...)
	}
	// Names the emitter must not import packages under: those of the
	// package's other configurations and every wrapper's own (name=time).
	reserved := maps.Clone(cp.otherNames)
	for name := range generatedNames(ws) {
		reserved[name] = token.NoPos
	}
	var files []File
	suffixes := make([]string, 0, len(groups))
	for s := range groups {
		suffixes = append(suffixes, s)
	}
	sort.Strings(suffixes)
	for _, suffix := range suffixes {
		out := filepath.Join(cp.dir, outputName(suffix))
		build := ""
		if g := groups[suffix]; len(g) > 0 {
			build = g[0].build
		}
		src, err := emit(pkg, groups[suffix], suffix, build, sentinels, reserved)
		if err != nil {
			return nil, append(c.diags, Diagnostic{Pos: token.Position{Filename: out}, Msg: "internal error: " + err.Error()})
		}
		files = append(files, File{Path: out, Content: src})
	}
	// Stale files: ours, with no directives left in their source, or whose
	// source is gone. A file for a source outside this build (another
	// GOOS, other tags) is left alone.
	existing, _ := filepath.Glob(filepath.Join(cp.dir, "dlock_gen*.go"))
	for _, path := range existing {
		suffix, ok := isOutputName(filepath.Base(path))
		if _, kept := groups[suffix]; !ok || kept || !ours(path) {
			continue
		}
		if suffix != "" {
			src := filepath.Join(cp.dir, suffix+".go")
			_, inBuild := cp.sources[src]
			if _, err := os.Stat(src); err == nil && !inBuild {
				continue
			}
		}
		files = append(files, File{Path: path})
	}
	return files, append(c.diags, warnings...)
}

// ours reports whether the file at path starts with dlockgen's header.
func ours(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, len(Header))
	n, _ := io.ReadFull(f, b)
	return n == len(Header) && string(b) == Header
}

// fileWrappers finds the directives of one file: those in a function's doc
// comment become wrappers; any other is a mistake.
func (c *checker) fileWrappers(f *ast.File) []*wrapper {
	attached := map[*ast.Comment]bool{}
	var ws []*wrapper
	for _, decl := range f.Decls {
		fd, ok := decl.(*ast.FuncDecl)
		if !ok || fd.Doc == nil {
			continue
		}
		var found []*ast.Comment
		for _, cm := range fd.Doc.List {
			if isDirectiveLike(cm.Text) {
				attached[cm] = true
				found = append(found, cm)
			}
		}
		if len(found) > 1 {
			c.errorf(found[1].Pos(), "only one //dlock: directive per function (%s already has one)", fd.Name.Name)
			continue
		}
		if len(found) == 1 {
			if w := c.wrapperOf(fd, found[0]); w != nil {
				ws = append(ws, w)
			}
		}
	}
	for _, g := range f.Comments {
		for _, cm := range g.List {
			if isDirectiveLike(cm.Text) && !attached[cm] {
				c.errorf(cm.Pos(), "%s must be in the doc comment right above a function or method", firstWord(cm.Text))
			}
		}
	}
	return ws
}

func firstWord(s string) string {
	if i := strings.IndexAny(s, " \t"); i > 0 {
		return s[:i]
	}
	return s
}

// fileOf is the file that holds pos, as it is on disk: a //line
// directive changes where positions are reported, not which file (and so
// which build constraints) a declaration is in.
//
// A cgo file (one that imports "C") is compiled from cmd/cgo's translation
// in the build cache, whose //line directives name the source: its
// positions are the source's.
func fileOf(pkg *packages.Package, pos token.Pos) string {
	name, _ := sourceOf(pkg, pos)
	return name
}

// sourceOf is fileOf, and whether the file is cgo's translation.
func sourceOf(pkg *packages.Package, pos token.Pos) (name string, cgo bool) {
	name = pkg.Fset.PositionFor(pos, false).Filename
	if pkg.Dir == "" || filepath.Dir(name) == pkg.Dir {
		return name, false
	}
	if adj := pkg.Fset.Position(pos).Filename; filepath.Dir(adj) == pkg.Dir {
		return adj, true
	}
	return name, false
}

func (c *checker) shortPos(p token.Pos) string { return shortPosition(c.pkg.Fset.Position(p)) }

func shortPosition(p token.Position) string {
	return fmt.Sprintf("%s:%d:%d", filepath.Base(p.Filename), p.Line, p.Column)
}

// sentinelVars are the package's exported sentinel errors (package-level
// variables named Err... of an error type) declared in unconstrained files,
// by name.
func sentinelVars(pkg *packages.Package, sources map[string]string) []*types.Var {
	errType := types.Universe.Lookup("error").Type().Underlying().(*types.Interface)
	scope := pkg.Types.Scope()
	var vs []*types.Var
	for _, name := range scope.Names() { // sorted
		v, ok := scope.Lookup(name).(*types.Var)
		if !ok || !v.Exported() || !strings.HasPrefix(name, "Err") || !types.Implements(v.Type(), errType) {
			continue
		}
		if out, ok := sources[fileOf(pkg, v.Pos())]; !ok || out != "" {
			continue // declared in a constrained file: dlock_gen.go is the same in every build
		}
		vs = append(vs, v)
	}
	return vs
}
