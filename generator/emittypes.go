package generator

import (
	"go/types"
	"strconv"
	"strings"

	"github.com/dave/jennifer/jen"
)

// Spelling types in generated code: the import names it reserves, and
// each type as the source wrote it.

// importAs imports path under a name of its own and returns it. The
// name is the package's, or "dlock"+name when the package declares name
// itself (a package-level msgpack or slices), a wrapper is named so
// (name=time), or generated code uses it for a local (a package named
// enc or v); then numbered when another path took it (two packages
// named model). jen is never left to pick an alias, so the names
// reserve keeps parameters away from are the names the file uses.
func (e *emitter) importAs(path, name string) string {
	if n, ok := e.importNames[path]; ok {
		return n
	}
	if e.declared(name) || generatedLocals[name] {
		name = "dlock" + name
	}
	for base, i := name, 2; e.imported[name] || e.declared(name); i++ {
		name = base + strconv.Itoa(i)
	}
	e.imported[name] = true
	e.importNames[path] = name
	if path == runtimePath || name != pathBase(path) {
		e.f.ImportAlias(path, name)
	} else {
		e.f.ImportName(path, name)
	}
	return name
}

// declared reports whether the package (in any configuration) or its
// wrappers declare name at package level.
func (e *emitter) declared(name string) bool {
	_, other := e.otherNames[name]
	return other || e.pkg.Types.Scope().Lookup(name) != nil
}

// generatedLocals are the local names of the codecs and decorators that an
// import name would shadow inside them.
var generatedLocals = map[string]bool{
	"a": true, "b": true, "base": true, "c": true, "dec": true, "dlockEntry": true, "e": true, "enc": true, "err": true,
	"es": true, "i": true, "k": true, "n": true, "v": true, "x": true,
}

func pathBase(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		path = path[i+1:]
	}
	return path
}

// reserve renames the parameters (and contexts) whose names the generated
// body cannot use: those of a package it refers to (time, strconv,
// context, msgpack, dlockrt, the packages of the wrapper's types).
func (e *emitter) reserve(ws []*wrapper) {
	taken := map[string]bool{}
	for name := range e.imported {
		taken[name] = true
	}
	seen := map[types.Type]bool{}
	for _, w := range ws {
		for _, p := range w.params {
			e.bodyNames(p.typ, taken, seen)
		}
		for _, r := range w.results {
			e.bodyNames(r, taken, seen)
		}
		taken[w.fn.Name()] = true // the body calls it
		if w.recv != nil {
			taken[w.recv.Obj().Name()] = true
		}
	}
	// Also renamed: names the body declares or calls (generated names all
	// start with dlock: dlockErr, dlockKey, dlockEncInt) and predeclared
	// ones it uses (a parameter named string shadows the conversion).
	clash := func(id string, i int) bool {
		ours := id == paramName("", i) // an unnamed parameter's
		return taken[id] || !ours && strings.HasPrefix(id, "dlock") || types.Universe.Lookup(id) != nil
	}
	for _, w := range ws {
		if clash(w.ctxName, 0) {
			w.ctxName = "dlockCtx"
		}
		for i := range w.params {
			if clash(w.params[i].id, i+1) {
				w.params[i].id = "dlockP" + strconv.Itoa(i+1)
			}
		}
	}
}

// bodyNames adds the names the wrapper body uses to spell t: the import
// names of the packages it refers to (assigned here, in the order the
// wrappers name them), and its named types of the package itself.
func (e *emitter) bodyNames(t types.Type, out map[string]bool, seen map[types.Type]bool) {
	if seen[t] {
		return
	}
	seen[t] = true
	switch t := t.(type) {
	case *types.Named:
		e.objName(t.Obj(), out)
		if args := t.TypeArgs(); args != nil {
			for i := 0; i < args.Len(); i++ {
				e.bodyNames(args.At(i), out, seen)
			}
		}
		e.bodyNames(t.Underlying(), out, seen)
	case *types.Alias:
		e.objName(t.Obj(), out)
		if args := t.TypeArgs(); args != nil {
			for i := 0; i < args.Len(); i++ {
				e.bodyNames(args.At(i), out, seen)
			}
		}
		e.bodyNames(types.Unalias(t), out, seen)
	case *types.Pointer:
		e.bodyNames(t.Elem(), out, seen)
	case *types.Slice:
		e.bodyNames(t.Elem(), out, seen)
	case *types.Array:
		e.bodyNames(t.Elem(), out, seen)
	case *types.Map:
		e.bodyNames(t.Key(), out, seen)
		e.bodyNames(t.Elem(), out, seen)
	case *types.Chan:
		e.bodyNames(t.Elem(), out, seen)
	case *types.Struct:
		for i := 0; i < t.NumFields(); i++ {
			e.bodyNames(t.Field(i).Type(), out, seen)
		}
	case *types.Signature:
		for i := 0; i < t.Params().Len(); i++ {
			e.bodyNames(t.Params().At(i).Type(), out, seen)
		}
		for i := 0; i < t.Results().Len(); i++ {
			e.bodyNames(t.Results().At(i).Type(), out, seen)
		}
	}
}

// objName adds the name that spells obj's package, or obj itself when
// it is the package's own.
func (e *emitter) objName(obj *types.TypeName, out map[string]bool) {
	switch p := obj.Pkg(); {
	case p == e.pkg.Types:
		out[obj.Name()] = true
	case p != nil:
		out[e.importAs(p.Path(), p.Name())] = true
	}
}

// typ renders a type, importing the packages it names.
func (e *emitter) typ(t types.Type) jen.Code {
	switch t := t.(type) {
	case *types.Alias:
		return e.qual(t.Obj(), t.TypeArgs())
	case *types.Named:
		return e.qual(t.Obj(), t.TypeArgs())
	case *types.Basic:
		if t.Kind() == types.UnsafePointer {
			return jen.Qual("unsafe", "Pointer")
		}
		return jen.Id(t.Name())
	case *types.Pointer:
		return jen.Op("*").Add(e.typ(t.Elem()))
	case *types.Slice:
		return jen.Index().Add(e.typ(t.Elem()))
	case *types.Array:
		return jen.Index(jen.Lit(int(t.Len()))).Add(e.typ(t.Elem()))
	case *types.Map:
		return jen.Map(e.typ(t.Key())).Add(e.typ(t.Elem()))
	case *types.Chan:
		switch t.Dir() {
		case types.SendOnly:
			return jen.Chan().Op("<-").Add(e.typ(t.Elem()))
		case types.RecvOnly:
			return jen.Op("<-").Chan().Add(e.typ(t.Elem()))
		}
		if in, ok := t.Elem().(*types.Chan); ok && in.Dir() == types.RecvOnly {
			// chan <-chan T would read as chan<- chan T.
			return jen.Chan().Parens(e.typ(in))
		}
		return jen.Chan().Add(e.typ(t.Elem()))
	case *types.Signature:
		var ps, rs []jen.Code
		for i := 0; i < t.Params().Len(); i++ {
			pt := t.Params().At(i).Type()
			if t.Variadic() && i == t.Params().Len()-1 {
				ps = append(ps, jen.Op("...").Add(e.typ(pt.(*types.Slice).Elem())))
			} else {
				ps = append(ps, e.typ(pt))
			}
		}
		for i := 0; i < t.Results().Len(); i++ {
			rs = append(rs, e.typ(t.Results().At(i).Type()))
		}
		return jen.Func().Params(ps...).Params(rs...)
	case *types.Interface:
		if t.Empty() {
			return jen.Any()
		}
		var ms []jen.Code
		for i := 0; i < t.NumEmbeddeds(); i++ {
			ms = append(ms, e.typ(t.EmbeddedType(i)))
		}
		for i := 0; i < t.NumExplicitMethods(); i++ {
			m := t.ExplicitMethod(i)
			sig := e.typ(m.Type()).(*jen.Statement)
			ms = append(ms, jen.Id(m.Name()).Add(signatureTail(sig)))
		}
		return jen.Interface(ms...)
	case *types.Struct:
		var fs []jen.Code
		for i := 0; i < t.NumFields(); i++ {
			f := t.Field(i)
			var fc *jen.Statement
			if f.Embedded() {
				fc = jen.Add(e.typ(f.Type()))
			} else {
				fc = jen.Id(f.Name()).Add(e.typ(f.Type()))
			}
			if tag := t.Tag(i); tag != "" {
				fc = fc.Op(strconv.Quote(tag))
			}
			fs = append(fs, fc)
		}
		return jen.Struct(fs...)
	case *types.TypeParam:
		return jen.Id(t.Obj().Name())
	}
	return jen.Id(types.TypeString(t, nil))
}

// signatureTail drops the leading "func" of a rendered signature, for an
// interface method.
func signatureTail(sig *jen.Statement) jen.Code {
	s := *sig
	return jen.Add(s[1:]...)
}

func (e *emitter) qual(obj *types.TypeName, args *types.TypeList) jen.Code {
	var s *jen.Statement
	switch {
	case obj.Pkg() == nil:
		s = jen.Id(obj.Name())
	case obj.Pkg().Path() == e.pkg.PkgPath:
		s = jen.Id(obj.Name())
	default:
		e.importAs(obj.Pkg().Path(), obj.Pkg().Name())
		s = jen.Qual(obj.Pkg().Path(), obj.Name())
	}
	if args != nil && args.Len() > 0 {
		var ts []jen.Code
		for i := 0; i < args.Len(); i++ {
			ts = append(ts, e.typ(args.At(i)))
		}
		s = s.Types(ts...)
	}
	return s
}
