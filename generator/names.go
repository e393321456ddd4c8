package generator

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The package-level names dlockgen generates, and those they must not
// collide with: the package's own, its test files', and those of its
// other build configurations.

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
		fileImportNames(f, nil, c.imports)
	}
	return names
}

// importNames returns the names the imports of the package's files (of
// every configuration, and its own test files) declare in their file
// scopes: a package-level name equal to one does not compile ("json
// already declared through import of package").
func (c *checker) importNames() map[string]importName {
	for _, f := range c.pkg.Syntax {
		if _, generated := isOutputName(filepath.Base(fileOf(c.pkg, f.Pos()))); !generated {
			fileImportNames(f, c.pkg.TypesInfo, c.imports)
		}
	}
	return c.imports
}

// fileImportNames adds the names f's imports declare: an import's own
// name, its package's name (from info, or guessed from the path's last
// element when f was only parsed), or a dot import's exported names.
func fileImportNames(f *ast.File, info *types.Info, names map[string]importName) {
	for _, s := range f.Imports {
		var pn *types.PkgName
		if info != nil {
			pn = info.PkgNameOf(s)
		}
		name := ""
		switch {
		case s.Name != nil:
			name = s.Name.Name
		case pn != nil:
			name = pn.Name()
		default:
			path, _ := strconv.Unquote(s.Path.Value)
			name = pathBase(path)
		}
		switch name {
		case "_":
		case ".":
			if pn != nil {
				scope := pn.Imported().Scope()
				for _, n := range scope.Names() {
					if token.IsExported(n) {
						names[n] = importName{s.Pos(), true}
					}
				}
			}
		default:
			names[name] = importName{s.Pos(), false}
		}
	}
}

// importName is where an import declares a name, and whether it is one
// of a dot import's.
type importName struct {
	pos token.Pos
	dot bool
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
		fileImportNames(f, nil, c.imports)
	}
	return names
}

// generatedNames are the package-level names the wrappers will declare.
func generatedNames(ws []*wrapper) map[string]bool {
	names := map[string]bool{}
	for _, w := range ws {
		if w.recv == nil {
			names[w.name] = true
			names[w.name+"Key"] = true
		} else {
			names[w.recv.Obj().Name()+"WithDlock"] = true
			names["New"+w.recv.Obj().Name()+"WithDlock"] = true
		}
	}
	return names
}

// checkCollisions refuses generated names that the package already uses.
func (c *checker) checkCollisions(ws []*wrapper, testNames map[string]token.Pos, imports map[string]importName) {
	scope := c.pkg.Types.Scope()
	taken := map[string]token.Position{}
	claim := func(name string, w *wrapper) {
		if obj := scope.Lookup(name); obj != nil {
			c.diags = append(c.diags, Diagnostic{Pos: w.pos, Msg: fmt.Sprintf("generated name %s collides with %s declared at %s", name, name, c.shortPos(obj.Pos()))})
			return
		}
		if in, ok := imports[name]; ok {
			what := "the import " + name
			if in.dot {
				what = name + " of the dot import"
			}
			c.diags = append(c.diags, Diagnostic{Pos: w.pos, Msg: fmt.Sprintf("generated name %s collides with %s at %s: choose another name= (or rename the import)", name, what, c.shortPos(in.pos))})
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
	methods := map[string]*wrapper{} // a decorator's methods, "T.M"
	for _, w := range ws {
		if w.recv != nil {
			methods[w.recv.Obj().Name()+"."+w.name] = w
		}
	}
	for _, w := range ws {
		if w.recv == nil {
			claim(w.name, w)
			claim(w.name+"Key", w)
			continue
		}
		key := w.name + "Key"
		if o, ok := methods[w.recv.Obj().Name()+"."+key]; ok {
			c.diags = append(c.diags, Diagnostic{Pos: w.pos, Msg: fmt.Sprintf("%sWithDlock.%s (the key of %s) is also the wrapper of the directive at %s", w.recv.Obj().Name(), key, w.name, shortPosition(o.pos))})
		} else if obj, _, _ := types.LookupFieldOrMethod(types.NewPointer(w.recv), true, c.pkg.Types, key); obj != nil {
			c.diags = append(c.diags, Diagnostic{Pos: w.pos, Msg: fmt.Sprintf("%sWithDlock.%s (the key of %s) would hide %s's own %s: rename one of them", w.recv.Obj().Name(), key, w.name, w.recv.Obj().Name(), key)})
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

// checkLocalNames refuses a type of the package that a wrapper's codecs or
// decorator must spell and that is named like one of their local
// variables (enc, dec, v, ...): the local would hide it there.
func (c *checker) checkLocalNames(ws []*wrapper) {
	seen := map[types.Type]bool{}
	reported := map[string]bool{}
	var walk func(t types.Type, w *wrapper)
	walk = func(t types.Type, w *wrapper) {
		if seen[t] {
			return
		}
		seen[t] = true
		var obj *types.TypeName
		switch n := t.(type) {
		case *types.Alias:
			obj = n.Obj()
			walk(types.Unalias(n), w)
		case *types.Named:
			obj = n.Obj()
			if args := n.TypeArgs(); args != nil {
				for i := 0; i < args.Len(); i++ {
					walk(args.At(i), w)
				}
			}
			walk(n.Underlying(), w)
		case *types.Pointer:
			walk(n.Elem(), w)
		case *types.Slice:
			walk(n.Elem(), w)
		case *types.Array:
			walk(n.Elem(), w)
		case *types.Map:
			walk(n.Key(), w)
			walk(n.Elem(), w)
		case *types.Struct:
			for i := 0; i < n.NumFields(); i++ {
				walk(n.Field(i).Type(), w)
			}
		}
		if obj != nil && obj.Pkg() == c.pkg.Types && generatedLocals[obj.Name()] && !reported[obj.Name()] {
			reported[obj.Name()] = true
			c.diags = append(c.diags, Diagnostic{Pos: w.pos, Msg: fmt.Sprintf("type %s (declared at %s) is named like a local variable of the code dlockgen generates (%s), which would hide it there: rename the type",
				obj.Name(), c.shortPos(obj.Pos()), strings.Join(slices.Sorted(maps.Keys(generatedLocals)), ", "))})
		}
	}
	for _, w := range ws {
		if w.recv != nil {
			walk(w.recv, w)
		}
		for _, t := range append(append([]types.Type{}, w.results...), paramTypes(w.params)...) {
			walk(t, w)
		}
	}
}
