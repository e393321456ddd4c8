package generator

import (
	"go/types"
	"strconv"
	"strings"

	"github.com/dave/jennifer/jen"
)

// shapeGuard pins the fields a named struct's codec was generated for:
//
//	var _ struct{ Name string; Email string `json:"email"` } = model.User{}
//
// compiles only while the struct's fields (names, types, tags, order) are
// those, so a dlock_gen.go written before a field was added, removed,
// renamed, retyped or retagged does not build (a stale codec would drop
// the new field without a word). It returns nil for other types, and for
// structs with a field that cannot be spelled here (an unexported field
// or type of another package): their codec names the fields it writes, so
// a removed or renamed one still fails to compile, and fieldsCheck pins the
// rest at program start.
func (e *emitter) shapeGuard(t types.Type) jen.Code {
	u := namedStruct(t)
	if u == nil {
		return nil
	}
	fields := make([]jen.Code, 0, u.NumFields())
	for i := 0; i < u.NumFields(); i++ {
		f := u.Field(i)
		if !e.spellable(f.Type(), map[types.Type]bool{}) || !f.Exported() && f.Pkg() != e.pkg.Types {
			return nil
		}
		field := jen.Id(f.Name()).Add(e.typ(f.Type()))
		if f.Embedded() {
			field = jen.Add(e.typ(f.Type()))
		}
		if tag := u.Tag(i); tag != "" {
			// Identity compares a tag's value, whichever literal spells it
			// (a raw string cannot hold a backquote, a carriage return or
			// invalid UTF-8).
			if strconv.CanBackquote(tag) {
				field = field.Op("`" + tag + "`")
			} else {
				field = field.Lit(tag)
			}
		}
		fields = append(fields, field)
	}
	return jen.Var().Id("_").Struct(fields...).Op("=").Add(e.typ(t)).Values()
}

// fieldsCheck is shapeGuard's stand-in for a named struct whose fields
// cannot all be spelled here: genrt.MustFields checks their names at
// program start.
func (e *emitter) fieldsCheck(t types.Type) jen.Code {
	u := namedStruct(t)
	if u == nil {
		return nil
	}
	args := []jen.Code{jen.Qual("reflect", "TypeFor").Types(e.typ(t)).Call()}
	for i := 0; i < u.NumFields(); i++ {
		if f := u.Field(i); f.Embedded() {
			args = append(args, jen.Lit(""))
		} else {
			args = append(args, jen.Lit(f.Name()))
		}
	}
	return jen.Var().Id("_").Op("=").Qual(genrtPath, "MustFields").Call(args...)
}

// namedStruct is t's struct when t is a named struct type, else nil.
func namedStruct(t types.Type) *types.Struct {
	if n, ok := types.Unalias(t).(*types.Named); ok {
		u, _ := n.Underlying().(*types.Struct)
		return u
	}
	return nil
}

// spellable reports whether generated code in this package can name t.
func (e *emitter) spellable(t types.Type, seen map[types.Type]bool) bool {
	if seen[t] {
		return true
	}
	seen[t] = true
	switch t := t.(type) {
	case *types.Basic:
		return true
	case *types.Alias:
		return e.spellableName(t.Obj(), t.TypeArgs(), seen)
	case *types.Named:
		return e.spellableName(t.Obj(), t.TypeArgs(), seen)
	case *types.Pointer:
		return e.spellable(t.Elem(), seen)
	case *types.Slice:
		return e.spellable(t.Elem(), seen)
	case *types.Array:
		return e.spellable(t.Elem(), seen)
	case *types.Map:
		return e.spellable(t.Key(), seen) && e.spellable(t.Elem(), seen)
	case *types.Chan:
		return e.spellable(t.Elem(), seen)
	case *types.Struct:
		for i := 0; i < t.NumFields(); i++ {
			if f := t.Field(i); !f.Exported() && f.Pkg() != e.pkg.Types || !e.spellable(f.Type(), seen) || t.Tag(i) != "" {
				return false
			}
		}
		return true
	case *types.Interface:
		return t.Empty()
	}
	return false
}

func (e *emitter) spellableName(obj *types.TypeName, args *types.TypeList, seen map[types.Type]bool) bool {
	if p := obj.Pkg(); p != nil && p != e.pkg.Types && (!obj.Exported() || !importable(p.Path(), e.pkg.PkgPath)) {
		return false
	}
	for i := 0; args != nil && i < args.Len(); i++ {
		if !e.spellable(args.At(i), seen) {
			return false
		}
	}
	return true
}

// importable reports whether package from may import path: a path with an
// internal element only from within the tree rooted at its parent.
func importable(path, from string) bool {
	parent, ok := "", false
	switch {
	case strings.HasPrefix(path, "internal/") || path == "internal":
		parent, ok = "", true
	case strings.Contains(path, "/internal/"):
		parent, ok = path[:strings.LastIndex(path, "/internal/")], true
	case strings.HasSuffix(path, "/internal"):
		parent, ok = strings.TrimSuffix(path, "/internal"), true
	}
	return !ok || parent == "" || from == parent || strings.HasPrefix(from, parent+"/")
}
