package generator

import (
	"fmt"
	"go/types"
)

// Why a type cannot be carried faithfully, read from its wire model.

// unencodable says why msgpack cannot carry t faithfully, or "".
func (c *checker) unencodable(t types.Type) string {
	w := c.wire.of(t)
	if w.lock != "" {
		return fmt.Sprintf("%s holds a lock by value (%s), which the wrapper would copy: carry a pointer to it", c.typeString(t), w.lock)
	}
	return c.refusal(w, map[*wireType]bool{})
}

func (c *checker) refusal(w *wireType, seen map[*wireType]bool) string {
	if seen[w] {
		return ""
	}
	seen[w] = true
	if n, ok := types.Unalias(w.t).(*types.Named); ok {
		obj := n.Obj()
		if obj.Pkg() != nil && obj.Pkg() != c.pkg.Types && !obj.Exported() {
			return fmt.Sprintf("type %s is unexported in package %s", obj.Name(), obj.Pkg().Path())
		}
		if w.selfWhy != "" {
			return w.selfWhy
		}
		if w.kind == kindTime || w.self != nil {
			return ""
		}
	}
	switch u := w.t.Underlying().(type) {
	case *types.Basic:
		if w.kind == kindReflect {
			return "msgpack carries no " + u.Name()
		}
	case *types.Pointer, *types.Slice:
		return c.refusal(w.elem, seen)
	case *types.Array:
		if w.elem.lock != "" {
			return fmt.Sprintf("an array of %s, which holds a lock by value (%s), would be copied: use a slice", c.typeString(u.Elem()), w.elem.lock)
		}
		return c.refusal(w.elem, seen)
	case *types.Map:
		if w.elem.lock != "" {
			return fmt.Sprintf("map values of type %s hold a lock by value (%s), which a map cannot give without copying: use pointers", c.typeString(u.Elem()), w.elem.lock)
		}
		if w.kind != kindMap {
			return fmt.Sprintf("map keys of type %s have no canonical order to be written in (use string or number keys, or a slice of key-value pairs)", c.typeString(u.Key()))
		}
		return c.refusal(w.elem, seen)
	case *types.Struct:
		for _, f := range w.fields {
			if f.skip {
				continue
			}
			if !f.v.Exported() {
				return fmt.Sprintf("field %s is unexported, and msgpack would drop it (export it, tag it msgpack:\"-\", or implement msgpack.CustomEncoder and CustomDecoder)", f.v.Name())
			}
			if why := c.refusal(f.wire, seen); why != "" {
				return "field " + f.v.Name() + ": " + why
			}
		}
	case *types.Interface:
		return "an interface cannot be decoded into its concrete type"
	case *types.Chan:
		return "a channel cannot be sent"
	case *types.Signature:
		return "a function cannot be sent"
	default:
		return fmt.Sprintf("unsupported type %s", c.typeString(w.t))
	}
	return ""
}
