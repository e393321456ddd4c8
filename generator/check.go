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
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/tools/go/packages"
)

// wrapper is one annotated function, checked and ready to emit.
type wrapper struct {
	verb verb
	settings
	text     string // the directive as written
	pos      token.Position
	fn       *types.Func
	recv     *types.Named // the receiver's type, for methods
	name     string       // the wrapper's name (the method's own, for methods)
	ctxName  string
	params   []param // after the context
	results  []types.Type
	variadic bool
	key      []keyPart // nil: digest of the arguments
	space    string    // what every key of this wrapper starts with: the function's identity, or space=
	named    string    // the space the user names: space without the fanout's shape hash
	recvName string    // the receiver's name in the method's declaration ("" if unnamed)
	recvPtr  bool      // the receiver is a pointer
	out      string    // the generated file's suffix ("": dlock_gen.go), from the source file's constraints
	build    string    // the source file's //go:build line, copied into that file
}

type param struct {
	name string // as declared ("" or "_" for none): what key templates name
	typ  types.Type
	id   string // the identifier generated code uses (see emitter.reserve)
}

// checker collects the diagnostics of one package.
type checker struct {
	pkg   *packages.Package
	diags []Diagnostic
	wire  wireTypes
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
func checkPackage(pkg *packages.Package) *checkedPackage {
	c := &checker{pkg: pkg}
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
		c.checkCollisions(ws, declared, c.importNames(cp.dir))
		c.checkKeySpaces(ws)
	}
	groups := map[string][]*wrapper{}
	if len(ws) > 0 && len(sentinelVars(pkg, cp.sources)) > 0 {
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
		src, err := emit(pkg, groups[suffix], suffix, build, cp.sources, reserved)
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

// wrapperOf parses and checks one directive on one function.
func (c *checker) wrapperOf(fd *ast.FuncDecl, cm *ast.Comment) *wrapper {
	d, errs := parseDirective(cm.Text)
	for _, e := range errs {
		c.errorf(cm.Pos()+token.Pos(e.off), "%s", e.msg)
	}
	if d == nil || len(errs) > 0 {
		return nil
	}
	obj, _ := c.pkg.TypesInfo.Defs[fd.Name].(*types.Func)
	if obj == nil {
		return nil
	}
	sig := obj.Type().(*types.Signature)
	w := &wrapper{text: cm.Text, pos: c.pkg.Fset.Position(cm.Pos()), fn: obj, variadic: sig.Variadic()}
	w.verb, w.settings = d.typed()
	at := fd.Name.Pos()
	if sig.TypeParams().Len() > 0 || (sig.Recv() != nil && sig.RecvTypeParams().Len() > 0) {
		c.errorf(at, "%s is generic: generic functions are not supported by dlockgen v1", fd.Name.Name)
		return nil
	}
	if r := sig.Recv(); r != nil {
		t := r.Type()
		if p, ok := t.(*types.Pointer); ok {
			t = p.Elem()
		}
		named, ok := types.Unalias(t).(*types.Named)
		if !ok {
			c.errorf(at, "receiver of %s is not a named type", fd.Name.Name)
			return nil
		}
		w.recv, w.name = named, fd.Name.Name
		_, w.recvPtr = t.(*types.Pointer)
		w.recvPtr = w.recvPtr || r.Type() != t
		if n := r.Name(); n != "_" {
			w.recvName = n
		}
		if a, ok := d.Args["name"]; ok {
			c.errorf(cm.Pos()+token.Pos(a.NameOff), "name= applies to functions; the method %s keeps its name in %sWithDlock", fd.Name.Name, named.Obj().Name())
			return nil
		}
	} else if a, ok := d.Args["name"]; ok {
		w.name = a.Value
		apos := cm.Pos() + token.Pos(a.ValueOff)
		switch {
		case !token.IsIdentifier(a.Value):
			c.errorf(apos, "name=%s is not a Go identifier", a.Value)
			return nil
		case a.Value == "init" || a.Value == "_":
			c.errorf(apos, "name=%s cannot name a function", a.Value)
			return nil
		case types.Universe.Lookup(a.Value) != nil:
			c.errorf(apos, "name=%s would shadow the predeclared identifier %s", a.Value, a.Value)
			return nil
		case a.Value == fd.Name.Name:
			c.errorf(apos, "name=%s is the function's own name: the wrapper needs another", a.Value)
			return nil
		}
	} else {
		name := fd.Name.Name
		w.name = exported(name)
		switch {
		case token.IsExported(name):
			c.errorf(at, "%s is already exported: the wrapper needs another name; annotate an unexported implementation or give name=", name)
			return nil
		case strings.HasPrefix(name, "_"):
			c.errorf(at, "%s starts with _, so it has no exported form: give name=", name)
			return nil
		case !token.IsExported(w.name):
			c.errorf(at, "%s has no upper-case form of its first letter to export: give name=", name)
			return nil
		}
	}
	ok := true
	ps := sig.Params()
	if ps.Len() == 0 || !isContext(ps.At(0).Type()) {
		c.errorf(at, "%s: the first parameter must be a context.Context", fd.Name.Name)
		ok = false
	} else {
		w.ctxName = paramName(ps.At(0).Name(), 0)
	}
	for i := 1; i < ps.Len(); i++ {
		w.params = append(w.params, param{name: ps.At(i).Name(), typ: ps.At(i).Type(), id: paramName(ps.At(i).Name(), i)})
	}
	rs := sig.Results()
	if rs.Len() == 0 || !isError(rs.At(rs.Len()-1).Type()) {
		c.errorf(at, "%s: the last result must be an error", fd.Name.Name)
		ok = false
	} else {
		for i := 0; i < rs.Len()-1; i++ {
			w.results = append(w.results, rs.At(i).Type())
		}
	}
	if !ok {
		return nil
	}
	for _, t := range append(append([]types.Type{}, w.results...), paramTypes(w.params)...) {
		if strings.Contains(types.TypeString(t, nil), "invalid type") {
			c.errorf(at, "%s: its signature uses a type that does not type-check (%s): a directive's signature cannot use names that dlockgen generates", fd.Name.Name, c.typeString(t))
			return nil
		}
	}
	if w.verb == verbFanout {
		for i, t := range w.results {
			if why := c.unencodable(t); why != "" {
				c.errorf(at, "%s: result %d (%s) cannot cross the wire: %s", fd.Name.Name, i+1, c.typeString(t), why)
				ok = false
			}
		}
	}
	w.space = w.fn.Pkg().Path() + "." + w.fn.Name()
	if w.recv != nil { // parentheses: no import path holds them
		w.space = w.fn.Pkg().Path() + ".(" + w.recv.Obj().Name() + ")." + w.fn.Name()
	}
	if a, has := d.Args["space"]; has {
		if !validSpace(a.Value) {
			c.errorf(cm.Pos()+token.Pos(a.ValueOff), "space=%q: want letters, digits and _ . / - only", a.Value)
			ok = false
		}
		w.space = a.Value
	}
	w.named = w.space
	if w.verb == verbFanout {
		// Builds whose result types differ in their wire shape never share
		// a flight (a rolling deploy runs both side by side).
		w.space += "#" + shapeHash(&c.wire, w.results)
	}
	if a, has := d.Args["key"]; has {
		w.key = c.checkKey(cm, a, w)
		ok = ok && w.key != nil
	} else {
		for _, p := range w.params {
			if why := c.unencodable(p.typ); why != "" {
				c.errorf(at, "%s: without key=, the key digests the arguments, and %s (%s) cannot be encoded: %s; give key=", fd.Name.Name, p.name, c.typeString(p.typ), why)
				ok = false
			}
		}
	}
	if !ok {
		return nil
	}
	return w
}

func paramTypes(ps []param) []types.Type {
	ts := make([]types.Type, len(ps))
	for i, p := range ps {
		ts[i] = p.typ
	}
	return ts
}

// paramName names a parameter the wrapper must refer to.
func paramName(name string, i int) string {
	if name == "" || name == "_" {
		return "dlockP" + strconv.Itoa(i)
	}
	return name
}

func exported(name string) string {
	r, n := utf8.DecodeRuneInString(name)
	return string(unicode.ToUpper(r)) + name[n:]
}

func isContext(t types.Type) bool {
	n, ok := types.Unalias(t).(*types.Named)
	return ok && n.Obj().Pkg() != nil && n.Obj().Pkg().Path() == "context" && n.Obj().Name() == "Context"
}

func isError(t types.Type) bool { return types.Identical(t, types.Universe.Lookup("error").Type()) }

func (c *checker) typeString(t types.Type) string {
	return types.TypeString(t, types.RelativeTo(c.pkg.Types))
}

// validSpace reports whether s can name a key space.
func validSpace(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("_./-", r))) {
			return false
		}
	}
	return true
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
