package generator

import (
	"go/ast"
	"go/token"
	"go/types"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The wrapper of one annotated function: its model, and how a directive
// and a signature become one (or diagnostics).

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
		case strings.HasPrefix(a.Value, "dlock"):
			c.errorf(apos, "name=%s: names starting with dlock are dlockgen's own", a.Value)
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
