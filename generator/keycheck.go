package generator

import (
	"bytes"
	"go/ast"
	"go/token"
	"go/types"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Key templates checked against the wrapper's parameters and receiver.

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
			if via := unguardable(typ, p.field, c.pkg.Types); via != nil {
				c.errorf(at(p.off), "key template: {%s} is promoted through the embedded field %s of %s, a %s this package cannot name, so the wrapper cannot check it for nil: key on a field or method that %s declares itself",
					holeText(p), via.Name(), c.typeString(deref(typ)), map[bool]string{true: "pointer", false: "interface"}[isPointer(via.Type())], c.typeString(deref(typ)))
				ok = false
				continue
			}
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

// unguardable returns the embedded field that the field or method name of
// t is promoted through and that generated code in package here can
// neither name nor so check for nil (an unexported embedded pointer or
// interface of another package), or nil.
func unguardable(t types.Type, name string, here *types.Package) *types.Var {
	_, index, _ := types.LookupFieldOrMethod(t, true, here, name)
	for _, i := range index[:max(len(index)-1, 0)] {
		st, ok := deref(t).Underlying().(*types.Struct)
		if !ok {
			return nil
		}
		f := st.Field(i)
		if panicsWhenNil(f.Type()) && !f.Exported() && f.Pkg() != here {
			return f
		}
		t = f.Type()
	}
	return nil
}

func isPointer(t types.Type) bool {
	_, ok := t.Underlying().(*types.Pointer)
	return ok
}
