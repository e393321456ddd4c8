package generator

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"go/types"
	"reflect"
	"strings"
)

// What msgpack carries faithfully, and the wire shape of the results that
// a fanout's key space carries.

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
