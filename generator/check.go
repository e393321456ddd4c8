package generator

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/tools/go/packages"
)

// wrapper is one annotated function, checked and ready to emit.
type wrapper struct {
	d        *directive
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
		name := fileOf(pkg, f.Pos())
		if dir == "" {
			dir = filepath.Dir(name)
		}
		if _, generated := isOutputName(filepath.Base(name)); generated || filepath.Dir(name) != dir {
			continue
		}
		suffix, build := outputFor(name, f)
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

// otherConfigNames returns the package-level names declared by the
// package's files that this build excludes (another GOOS, other tags), so
// that what dlock_gen.go holds, and how it names its imports, does not
// depend on the configuration dlockgen runs under.
func (c *checker) otherConfigNames(dir string, sources map[string]string) map[string]token.Pos {
	names := map[string]token.Pos{}
	paths, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, path := range paths {
		base := filepath.Base(path)
		if _, in := sources[path]; in || strings.HasSuffix(base, "_test.go") {
			continue
		}
		if _, generated := isOutputName(base); generated {
			continue
		}
		f, err := parser.ParseFile(c.pkg.Fset, path, nil, parser.SkipObjectResolution)
		if err != nil || f.Name.Name != c.pkg.Name {
			continue
		}
		declNames(f, names)
	}
	return names
}

// declNames adds the package-level names f declares.
func declNames(f *ast.File, names map[string]token.Pos) {
	for _, decl := range f.Decls {
		switch d := decl.(type) {
		case *ast.FuncDecl:
			if d.Recv == nil {
				names[d.Name.Name] = d.Name.Pos()
			}
		case *ast.GenDecl:
			for _, spec := range d.Specs {
				switch s := spec.(type) {
				case *ast.TypeSpec:
					names[s.Name.Name] = s.Name.Pos()
				case *ast.ValueSpec:
					for _, n := range s.Names {
						names[n.Name] = n.Pos()
					}
				}
			}
		}
	}
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
			if n := constrainedType(t, c.pkg, sources, seen); n != nil {
				file := filepath.Base(fileOf(c.pkg, n.Obj().Pos()))
				c.diags = append(c.diags, Diagnostic{Pos: w.pos, Msg: fmt.Sprintf("%s uses %s, declared in %s, which has build constraints: move the function to a file with the same constraints", w.fn.Name(), n.Obj().Name(), file)})
				break
			}
		}
	}
}

// constrainedType returns a named type of pkg in t declared in a
// constrained file, or nil.
func constrainedType(t types.Type, pkg *packages.Package, sources map[string]string, seen map[types.Type]bool) *types.Named {
	if seen[t] {
		return nil
	}
	seen[t] = true
	switch u := types.Unalias(t).(type) {
	case *types.Named:
		if u.Obj().Pkg() == pkg.Types {
			if out := sources[fileOf(pkg, u.Obj().Pos())]; out != "" {
				return u
			}
		}
		return constrainedType(u.Underlying(), pkg, sources, seen)
	case *types.Pointer:
		return constrainedType(u.Elem(), pkg, sources, seen)
	case *types.Slice:
		return constrainedType(u.Elem(), pkg, sources, seen)
	case *types.Array:
		return constrainedType(u.Elem(), pkg, sources, seen)
	case *types.Map:
		if n := constrainedType(u.Key(), pkg, sources, seen); n != nil {
			return n
		}
		return constrainedType(u.Elem(), pkg, sources, seen)
	case *types.Struct:
		for i := 0; i < u.NumFields(); i++ {
			if n := constrainedType(u.Field(i).Type(), pkg, sources, seen); n != nil {
				return n
			}
		}
	}
	return nil
}

// testFiles reads the package's _test.go files: a directive there is
// diagnosed (dlockgen does not generate for test files), and the names the
// package's own test files declare are returned, since a generated name
// that collides with one breaks go test.
func (c *checker) testFiles(dir string) map[string]token.Pos {
	names := map[string]token.Pos{}
	paths, _ := filepath.Glob(filepath.Join(dir, "*_test.go"))
	for _, path := range paths {
		f, err := parser.ParseFile(c.pkg.Fset, path, nil, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			continue // go test reports it
		}
		for _, g := range f.Comments {
			for _, cm := range g.List {
				if isDirectiveLike(cm.Text) {
					c.errorf(cm.Pos(), "%s in a _test.go file: dlockgen generates wrappers for non-test files only; move the function to a non-test file", firstWord(cm.Text))
				}
			}
		}
		if f.Name.Name != c.pkg.Name {
			continue // an external test package declares its own names
		}
		declNames(f, names)
	}
	return names
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
		c.checkCollisions(ws, declared)
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
		src, err := emit(pkg, groups[suffix], suffix, build, cp.sources, cp.otherNames)
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
	w := &wrapper{d: d, text: cm.Text, pos: c.pkg.Fset.Position(cm.Pos()), fn: obj, variadic: sig.Variadic()}
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
	if d.Verb == "fanout" {
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
	if d.Verb == "fanout" {
		// Builds whose result types differ in their wire shape never share
		// a flight (a rolling deploy runs both side by side).
		w.space += "#" + shapeHash(w.results)
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

// checkKey resolves the template's holes to parameters, their fields, or
// the receiver's exported fields and methods, of string, bool or integer
// kinds; and checks that the template is injective: holes are separated by
// literal text with punctuation (the values are escaped for it).
func (c *checker) checkKey(cm *ast.Comment, a arg, w *wrapper) []keyPart {
	parts, errs := parseKeyTemplate(a.Value)
	at := func(off int) token.Pos { return cm.Pos() + token.Pos(a.ValueOff+1+off) }
	for _, e := range errs {
		c.errorf(at(e.off), "%s", e.msg)
	}
	ok := len(errs) == 0
	for i, p := range parts {
		if p.param == "" {
			continue
		}
		if i > 0 && parts[i-1].param != "" || i > 1 && !strings.ContainsAny(parts[i-1].lit, keySeparators(parts)) {
			c.errorf(at(p.off), "key template: {%s} must be separated from the hole before it by punctuation other than %% (such as ':'), so that different values never make the same key", holeText(p))
			ok = false
			continue
		}
		if p.param == "_" {
			c.errorf(at(p.off), "key template: {_} names no parameter")
			ok = false
			continue
		}
		var typ types.Type
		for _, q := range w.params {
			if q.name == p.param {
				typ = q.typ
				break
			}
		}
		if typ == nil && w.recv != nil && p.param == w.recvName {
			typ = w.recv
			if w.recvPtr {
				typ = types.NewPointer(w.recv)
			}
			if p.field == "" || !token.IsExported(p.field) {
				c.errorf(at(p.off), "key template: {%s} must name an exported field or method of the receiver, as {%s.Field}", holeText(p), p.param)
				ok = false
				continue
			}
		}
		if typ == nil {
			c.errorf(at(p.off), "key template: {%s} is not a parameter of %s", p.param, w.fn.Name())
			ok = false
			continue
		}
		if p.field != "" {
			obj, _, _ := types.LookupFieldOrMethod(typ, true, c.pkg.Types, p.field)
			switch v := obj.(type) {
			case *types.Var:
				if !v.IsField() {
					obj = nil
					break
				}
				typ = v.Type()
			case *types.Func:
				sig := v.Type().(*types.Signature)
				if sig.Params().Len() != 0 || sig.Results().Len() != 1 {
					c.errorf(at(p.off), "key template: %s.%s must take no arguments and return one value", p.param, p.field)
					ok = false
					continue
				}
				typ = sig.Results().At(0).Type()
			default:
				obj = nil
			}
			if obj == nil {
				c.errorf(at(p.off), "key template: %s (%s) has no field %s", p.param, c.typeString(typ), p.field)
				ok = false
				continue
			}
		}
		if b, isBasic := typ.Underlying().(*types.Basic); !isBasic || b.Info()&(types.IsString|types.IsBoolean|types.IsInteger) == 0 {
			c.errorf(at(p.off), "key template: {%s} is %s; want a string, bool or integer kind", holeText(p), c.typeString(typ))
			ok = false
		}
	}
	if !ok {
		return nil
	}
	if len(parts) == 0 {
		parts = []keyPart{{lit: a.Value}}
	}
	return parts
}

// keySeparators returns the ASCII punctuation of the template's literal
// text: a hole's value is escaped for each of these (and '%'), so the
// rendered key splits back into its values in exactly one way.
func keySeparators(parts []keyPart) string {
	var seps []byte
	for _, p := range parts {
		for i := 0; i < len(p.lit); i++ {
			b := p.lit[i]
			if b < utf8.RuneSelf && !unicode.IsLetter(rune(b)) && !unicode.IsDigit(rune(b)) && b != '%' && !bytes.ContainsRune(seps, rune(b)) {
				seps = append(seps, b)
			}
		}
	}
	return string(seps)
}

func holeText(p keyPart) string {
	if p.field != "" {
		return p.param + "." + p.field
	}
	return p.param
}

// unencodable says why msgpack cannot carry t faithfully, or "".
func (c *checker) unencodable(t types.Type) string {
	return c.unencodableSeen(t, map[types.Type]bool{})
}

func (c *checker) unencodableSeen(t types.Type, seen map[types.Type]bool) string {
	if seen[t] {
		return ""
	}
	seen[t] = true
	if n, ok := types.Unalias(t).(*types.Named); ok {
		obj := n.Obj()
		if obj.Pkg() != nil && obj.Pkg() != c.pkg.Types && !obj.Exported() {
			return fmt.Sprintf("type %s is unexported in package %s", obj.Name(), obj.Pkg().Path())
		}
		if customCodec(n) || isTime(n) || marshalers(n) != "" {
			return ""
		}
	}
	switch u := t.Underlying().(type) {
	case *types.Basic:
		if u.Info()&(types.IsBoolean|types.IsInteger|types.IsFloat|types.IsString) == 0 || u.Kind() == types.UnsafePointer {
			return "msgpack carries no " + u.Name()
		}
	case *types.Pointer:
		return c.unencodableSeen(u.Elem(), seen)
	case *types.Slice:
		return c.unencodableSeen(u.Elem(), seen)
	case *types.Array:
		return c.unencodableSeen(u.Elem(), seen)
	case *types.Map:
		if k, ok := u.Key().Underlying().(*types.Basic); !ok || k.Info()&types.IsOrdered == 0 {
			return fmt.Sprintf("map keys of type %s have no canonical order to be written in (use string or number keys, or a slice of key-value pairs)", c.typeString(u.Key()))
		}
		return c.unencodableSeen(u.Elem(), seen)
	case *types.Struct:
		for i := 0; i < u.NumFields(); i++ {
			f := u.Field(i)
			if skipped(u, i) {
				continue
			}
			if !f.Exported() {
				return fmt.Sprintf("field %s is unexported, and msgpack would drop it (export it, tag it msgpack:\"-\", or implement msgpack.CustomEncoder and CustomDecoder)", f.Name())
			}
			if why := c.unencodableSeen(f.Type(), seen); why != "" {
				return "field " + f.Name() + ": " + why
			}
		}
	case *types.Interface:
		return "an interface cannot be decoded into its concrete type"
	case *types.Chan:
		return "a channel cannot be sent"
	case *types.Signature:
		return "a function cannot be sent"
	default:
		return fmt.Sprintf("unsupported type %s", c.typeString(t))
	}
	return ""
}

// reflectTag returns the msgpack tag's name part.
func reflectTag(tag string) string {
	name, _, _ := strings.Cut(reflect.StructTag(tag).Get("msgpack"), ",")
	return name
}

// customCodec reports whether n (or *n) encodes itself for msgpack, with
// methods declared on n itself (one promoted from an embedded field would
// encode that field alone).
func customCodec(n *types.Named) bool {
	return declares(n, "EncodeMsgpack") || declares(n, "MarshalMsgpack")
}

// declares reports whether n declares a method named name (on n or *n).
func declares(n *types.Named, name string) bool {
	for i := 0; i < n.NumMethods(); i++ {
		if n.Method(i).Name() == name {
			return true
		}
	}
	return false
}

// marshalers returns "Binary" when n declares MarshalBinary and
// UnmarshalBinary, else "Text" for MarshalText and UnmarshalText, else "".
// Methods promoted from an embedded field do not count: they would encode
// that field alone.
func marshalers(n *types.Named) string {
	for _, kind := range []string{"Binary", "Text"} {
		if declares(n, "Marshal"+kind) && declares(n, "Unmarshal"+kind) {
			return kind
		}
	}
	return ""
}

func isTime(n *types.Named) bool {
	return n.Obj().Pkg() != nil && n.Obj().Pkg().Path() == "time" && n.Obj().Name() == "Time"
}

// generatedNames are the package-level names the wrappers will declare.
func generatedNames(ws []*wrapper) map[string]bool {
	names := map[string]bool{}
	for _, w := range ws {
		if w.recv == nil {
			names[w.name] = true
		} else {
			names[w.recv.Obj().Name()+"WithDlock"] = true
			names["New"+w.recv.Obj().Name()+"WithDlock"] = true
		}
	}
	return names
}

// checkCollisions refuses generated names that the package already uses.
func (c *checker) checkCollisions(ws []*wrapper, testNames map[string]token.Pos) {
	scope := c.pkg.Types.Scope()
	taken := map[string]token.Position{}
	claim := func(name string, w *wrapper) {
		if obj := scope.Lookup(name); obj != nil {
			c.diags = append(c.diags, Diagnostic{Pos: w.pos, Msg: fmt.Sprintf("generated name %s collides with %s declared at %s", name, name, c.shortPos(obj.Pos()))})
			return
		}
		if pos, ok := testNames[name]; ok {
			c.diags = append(c.diags, Diagnostic{Pos: w.pos, Msg: fmt.Sprintf("generated name %s collides with %s declared at %s (in a test file or another build configuration)", name, name, c.shortPos(pos))})
			return
		}
		if p, ok := taken[name]; ok {
			c.diags = append(c.diags, Diagnostic{Pos: w.pos, Msg: fmt.Sprintf("generated name %s is also generated for the directive at %s", name, shortPosition(p))})
			return
		}
		taken[name] = w.pos
	}
	decorated := map[*types.Named]bool{}
	for _, w := range ws {
		if w.recv == nil {
			claim(w.name, w)
			continue
		}
		if !decorated[w.recv] {
			decorated[w.recv] = true
			claim(w.recv.Obj().Name()+"WithDlock", w)
			claim("New"+w.recv.Obj().Name()+"WithDlock", w)
		}
	}
	for _, name := range scope.Names() {
		if strings.HasPrefix(name, "dlockEnc") || strings.HasPrefix(name, "dlockDec") {
			obj := scope.Lookup(name)
			c.errorf(obj.Pos(), "%s: names starting with dlockEnc and dlockDec are reserved for dlockgen's codecs", name)
		}
	}
}

// fileOf is the file that holds pos, as it is on disk: a //line
// directive changes where positions are reported, not which file (and so
// which build constraints) a declaration is in.
func fileOf(pkg *packages.Package, pos token.Pos) string {
	return pkg.Fset.PositionFor(pos, false).Filename
}

func (c *checker) shortPos(p token.Pos) string { return shortPosition(c.pkg.Fset.Position(p)) }

func shortPosition(p token.Position) string {
	return fmt.Sprintf("%s:%d:%d", filepath.Base(p.Filename), p.Line, p.Column)
}

// shapeVersion changes whenever the generated codecs change their wire
// format: builds of different codec versions never share a flight.
const shapeVersion = "2"

// shapeHash is a short digest of the results' wire shape: named types by
// package path and name, with their structure (fields, their names, types
// and tags, in order), so that adding a field changes it.
func shapeHash(results []types.Type) string {
	var b strings.Builder
	b.WriteString(shapeVersion)
	seen := map[*types.Named]bool{}
	for _, t := range results {
		b.WriteByte(';')
		writeShape(&b, t, seen)
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:4])
}

func writeShape(b *strings.Builder, t types.Type, seen map[*types.Named]bool) {
	switch t := types.Unalias(t).(type) {
	case *types.Named:
		if t.Obj().Pkg() != nil {
			b.WriteString(t.Obj().Pkg().Path() + ".")
		}
		b.WriteString(t.Obj().Name())
		if args := t.TypeArgs(); args != nil {
			for i := 0; i < args.Len(); i++ {
				b.WriteString("[")
				writeShape(b, args.At(i), seen)
				b.WriteString("]")
			}
		}
		if seen[t] || t.Obj().Pkg() == nil || isTime(t) {
			return
		}
		seen[t] = true
		if customCodec(t) {
			b.WriteString("{custom}")
			return
		}
		if m := marshalers(t); m != "" {
			b.WriteString("{" + m + "}")
			return
		}
		b.WriteString("{")
		writeShape(b, t.Underlying(), seen)
		b.WriteString("}")
	case *types.Struct:
		b.WriteString("struct{")
		for i := 0; i < t.NumFields(); i++ {
			f := t.Field(i)
			fmt.Fprintf(b, "%s %v %q;", f.Name(), f.Embedded(), t.Tag(i))
			writeShape(b, f.Type(), seen)
			b.WriteString(";")
		}
		b.WriteString("}")
	case *types.Pointer:
		b.WriteString("*")
		writeShape(b, t.Elem(), seen)
	case *types.Slice:
		b.WriteString("[]")
		writeShape(b, t.Elem(), seen)
	case *types.Array:
		fmt.Fprintf(b, "[%d]", t.Len())
		writeShape(b, t.Elem(), seen)
	case *types.Map:
		b.WriteString("map[")
		writeShape(b, t.Key(), seen)
		b.WriteString("]")
		writeShape(b, t.Elem(), seen)
	default:
		b.WriteString(types.TypeString(t, nil))
	}
}
