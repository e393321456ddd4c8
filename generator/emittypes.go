package generator

import (
	"go/types"
	"strconv"
	"strings"

	"github.com/dave/jennifer/jen"
)

// Spelling types in generated code: the import names it reserves, and
// each type as the source wrote it.

// importAs imports path under name, or under "dlock"+name when the package
// declares name itself (a package-level msgpack or slices).
func (e *emitter) importAs(path, name string) {
	if _, other := e.otherNames[name]; other || e.pkg.Types.Scope().Lookup(name) != nil {
		name = "dlock" + name
	}
	e.imported[name] = true
	if path == runtimePath || name != pathBase(path) {
		e.f.ImportAlias(path, name)
	} else {
		e.f.ImportName(path, name)
	}
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
			packageNames(p.typ, e.pkg.Types, taken, seen)
		}
		for _, r := range w.results {
			packageNames(r, e.pkg.Types, taken, seen)
		}
		taken[w.fn.Name()] = true // the body calls it
		if w.recv != nil {
			taken[w.recv.Obj().Name()] = true
		}
	}
	for _, w := range ws {
		if taken[w.ctxName] {
			w.ctxName = "dlockCtx"
		}
		for i := range w.params {
			if taken[w.params[i].id] {
				w.params[i].id = "dlockP" + strconv.Itoa(i+1)
			}
		}
	}
}

// packageNames adds the names the wrapper body uses to spell t: the
// packages it refers to, and its named types of the package here.
func packageNames(t types.Type, here *types.Package, out map[string]bool, seen map[types.Type]bool) {
	if seen[t] {
		return
	}
	seen[t] = true
	switch t := t.(type) {
	case *types.Named:
		if p := t.Obj().Pkg(); p == here {
			out[t.Obj().Name()] = true
		} else if p != nil {
			out[p.Name()] = true
		}
		if args := t.TypeArgs(); args != nil {
			for i := 0; i < args.Len(); i++ {
				packageNames(args.At(i), here, out, seen)
			}
		}
		packageNames(t.Underlying(), here, out, seen)
	case *types.Alias:
		packageNames(types.Unalias(t), here, out, seen)
	case *types.Pointer:
		packageNames(t.Elem(), here, out, seen)
	case *types.Slice:
		packageNames(t.Elem(), here, out, seen)
	case *types.Array:
		packageNames(t.Elem(), here, out, seen)
	case *types.Map:
		packageNames(t.Key(), here, out, seen)
		packageNames(t.Elem(), here, out, seen)
	case *types.Chan:
		packageNames(t.Elem(), here, out, seen)
	case *types.Struct:
		for i := 0; i < t.NumFields(); i++ {
			packageNames(t.Field(i).Type(), here, out, seen)
		}
	case *types.Signature:
		for i := 0; i < t.Params().Len(); i++ {
			packageNames(t.Params().At(i).Type(), here, out, seen)
		}
		for i := 0; i < t.Results().Len(); i++ {
			packageNames(t.Results().At(i).Type(), here, out, seen)
		}
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
