package generator

import (
	"go/types"
	"strconv"

	"github.com/dave/jennifer/jen"
)

// The wrapper's key: its space and the rendered template, each hole
// guarded against nil pointers and interfaces, or a digest of the
// arguments.

// key emits dlockKey: the wrapper's space, then the template with every
// value escaped for the template's punctuation (so the key is injective),
// or a digest of the arguments.
func (e *emitter) key(w *wrapper) []jen.Code {
	if w.key != nil {
		var b []jen.Code
		seps := keySeparators(w.key)
		lit := w.space + ":"
		var expr *jen.Statement
		add := func(part jen.Code) {
			if expr == nil {
				expr = jen.Add(part)
			} else {
				expr = expr.Op("+").Add(part)
			}
		}
		for _, p := range w.key {
			if p.param == "" {
				lit += p.lit
				continue
			}
			if lit != "" {
				add(jen.Lit(lit))
				lit = ""
			}
			b = append(b, e.nilGuard(w, p)...)
			add(jen.Qual(genrtPath, "KeyValue").Call(e.keyHole(w, p), jen.Lit(seps)))
		}
		if lit != "" {
			add(jen.Lit(lit))
		}
		if seps != "" {
			// The set differs by template: say which, and why.
			b = append(b, jen.Commentf("Each value is escaped for %s (the template's punctuation), so different values never make the same key.", strconv.Quote(seps)))
		}
		return append(b, jen.Id("dlockKey").Op(":=").Add(expr))
	}
	name := w.space
	var enc []jen.Code
	for _, p := range w.params {
		enc = append(enc, jen.If(jen.Err().Op(":=").Id(e.encName(p.typ)).Call(jen.Id("dlockEnc"), jen.Id(p.id)), jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Err())))
	}
	enc = append(enc, jen.Return(jen.Nil()))
	return []jen.Code{
		jen.List(jen.Id("dlockKey"), jen.Id("dlockErr")).Op(":=").Qual(genrtPath, "DigestKey").Call(
			jen.Lit(name), jen.Lit(len(w.params)),
			jen.Func().Params(jen.Id("dlockEnc").Op("*").Qual(msgpackPath, "Encoder")).Error().Block(enc...)),
		e.ifErrReturn(w),
	}
}

// holeBase is the expression and type a hole starts from: a parameter, or
// the receiver (the decorator's embedded pointer).
func (e *emitter) holeBase(w *wrapper, p keyPart) (*jen.Statement, types.Type, bool) {
	for _, q := range w.params {
		if q.name == p.param {
			return jen.Id(q.id), q.typ, false
		}
	}
	return jen.Id("dlockD").Dot(w.recv.Obj().Name()), types.NewPointer(w.recv), true
}

// nilGuard returns an error, instead of panicking, when a hole reads a
// field or method through a nil pointer or interface.
// Every pointer and interface on the way is guarded: the base, and each
// embedded field that a promoted field or method is reached through.
func (e *emitter) nilGuard(w *wrapper, p keyPart) []jen.Code {
	if p.field == "" {
		return nil
	}
	expr, typ, _ := e.holeBase(w, p)
	var guards []jen.Code
	guard := func(x *jen.Statement) {
		guards = append(guards, jen.If(x.Clone().Op("==").Nil()).Block(
			e.returnErr(w, jen.Qual(genrtPath, "NilKeyValue").Call(jen.Lit(holeText(p))))))
	}
	if panicsWhenNil(typ) {
		guard(expr)
	}
	_, index, _ := types.LookupFieldOrMethod(typ, true, e.pkg.Types, p.field)
	for _, i := range index[:max(len(index)-1, 0)] { // the embedded fields on the way
		st, ok := deref(typ).Underlying().(*types.Struct)
		if !ok {
			break
		}
		f := st.Field(i)
		expr = expr.Clone().Dot(f.Name())
		typ = f.Type()
		if panicsWhenNil(typ) {
			guard(expr)
		}
	}
	return guards
}

// panicsWhenNil reports whether a hole reading through a value of type t
// panics when it is nil: a pointer, or an interface (its method).
func panicsWhenNil(t types.Type) bool {
	switch t.Underlying().(type) {
	case *types.Pointer, *types.Interface:
		return true
	}
	return false
}

func deref(t types.Type) types.Type {
	if p, ok := t.Underlying().(*types.Pointer); ok {
		return p.Elem()
	}
	return t
}

// keyHole renders one {param}, {param.Field} or {recv.Method} as a string
// expression.
func (e *emitter) keyHole(w *wrapper, p keyPart) jen.Code {
	expr, typ, _ := e.holeBase(w, p)
	if p.field != "" {
		expr = expr.Dot(p.field)
		obj, _, _ := types.LookupFieldOrMethod(typ, true, e.pkg.Types, p.field)
		typ = obj.Type()
		if fn, ok := obj.(*types.Func); ok {
			expr = expr.Call()
			typ = fn.Type().(*types.Signature).Results().At(0).Type()
		}
	}
	b := typ.Underlying().(*types.Basic)
	switch {
	case b.Info()&types.IsString != 0:
		if types.Identical(typ, types.Typ[types.String]) {
			return expr
		}
		return jen.String().Call(expr)
	case b.Info()&types.IsBoolean != 0:
		return jen.Qual("strconv", "FormatBool").Call(jen.Bool().Call(expr))
	case b.Info()&types.IsUnsigned != 0:
		return jen.Qual("strconv", "FormatUint").Call(jen.Uint64().Call(expr), jen.Lit(10))
	default:
		return jen.Qual("strconv", "FormatInt").Call(jen.Int64().Call(expr), jen.Lit(10))
	}
}
