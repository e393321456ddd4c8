package generator

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"go/types"
	"strings"
)

// The wire shape of the results that a fanout's key space carries.

// shapeVersion changes whenever the generated codecs change their wire
// format: builds of different codec versions never share a flight.
const shapeVersion = "2"

// shapeHash is a short digest of the results' wire shape: named types by
// package path and name, with their structure (fields, their names, types
// and tags, in order), so that adding a field changes it.
func shapeHash(ws *wireTypes, results []types.Type) string {
	var b strings.Builder
	b.WriteString(shapeVersion)
	seen := map[*types.Named]bool{}
	for _, t := range results {
		b.WriteByte(';')
		writeShape(&b, ws, ws.of(t), seen)
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:4])
}

// writeShape writes w's shape: a named type's name (and type arguments),
// then how it goes: the methods it carries itself with, or its structure,
// once per named type.
func writeShape(b *strings.Builder, ws *wireTypes, w *wireType, seen map[*types.Named]bool) {
	n, named := types.Unalias(w.t).(*types.Named)
	if !named {
		writeStructure(b, ws, w, seen)
		return
	}
	if n.Obj().Pkg() != nil {
		b.WriteString(n.Obj().Pkg().Path() + ".")
	}
	b.WriteString(n.Obj().Name())
	if args := n.TypeArgs(); args != nil {
		for i := 0; i < args.Len(); i++ {
			b.WriteString("[")
			writeShape(b, ws, ws.of(args.At(i)), seen)
			b.WriteString("]")
		}
	}
	if seen[n] || n.Obj().Pkg() == nil || w.kind == kindTime {
		return
	}
	seen[n] = true
	if w.self != nil {
		b.WriteString("{" + w.self.kind + "}")
		return
	}
	b.WriteString("{")
	writeStructure(b, ws, w, seen)
	b.WriteString("}")
}

// writeStructure writes the shape of w's underlying type.
func writeStructure(b *strings.Builder, ws *wireTypes, w *wireType, seen map[*types.Named]bool) {
	switch u := w.t.Underlying().(type) {
	case *types.Struct:
		b.WriteString("struct{")
		for _, f := range w.fields {
			fmt.Fprintf(b, "%s %v %q;", f.v.Name(), f.v.Embedded(), f.tag)
			writeShape(b, ws, f.wire, seen)
			b.WriteString(";")
		}
		b.WriteString("}")
	case *types.Pointer:
		b.WriteString("*")
		if w.boxed {
			b.WriteString("box ")
		}
		writeShape(b, ws, w.elem, seen)
	case *types.Slice:
		b.WriteString("[]")
		writeShape(b, ws, w.elem, seen)
	case *types.Array:
		fmt.Fprintf(b, "[%d]", u.Len())
		writeShape(b, ws, w.elem, seen)
	case *types.Map:
		b.WriteString("map[")
		writeShape(b, ws, w.key, seen)
		b.WriteString("]")
		writeShape(b, ws, w.elem, seen)
	default:
		b.WriteString(types.TypeString(u, nil))
	}
}
