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
	if p := heldLock(t); p != "" {
		return fmt.Sprintf("%s holds a lock by value (%s), which the wrapper would copy: carry a pointer to it", c.typeString(t), p)
	}
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
		if isTime(n) {
			return ""
		}
		if sc, why := codecOf(n); sc != nil {
			return ""
		} else if why != "" {
			return why
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
		if p := heldLock(u.Elem()); p != "" && u.Len() > 0 {
			return fmt.Sprintf("an array of %s, which holds a lock by value (%s), would be copied: use a slice", c.typeString(u.Elem()), p)
		}
		return c.unencodableSeen(u.Elem(), seen)
	case *types.Map:
		if p := heldLock(u.Elem()); p != "" {
			return fmt.Sprintf("map values of type %s hold a lock by value (%s), which a map cannot give without copying: use pointers", c.typeString(u.Elem()), p)
		}
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

// selfCodec is how a named type carries itself, when it does: the method
// pair its codec calls.
type selfCodec struct {
	kind     string // "custom" (msgpack's own interfaces), "Gob", "Binary" or "Text"
	enc, dec string // the methods' names
	encSig   string // their signatures, as types.TypeString spells them
	decSig   string
}

// selfCodecs in the order they are preferred: msgpack's own, then gob's
// (lossless for math/big's numbers, whose text loses a Float's precision),
// then binary, then text marshalers.
var selfCodecs = []selfCodec{
	{"custom", "EncodeMsgpack", "DecodeMsgpack", "func(*" + msgpackPath + ".Encoder) error", "func(*" + msgpackPath + ".Decoder) error"},
	{"custom", "MarshalMsgpack", "UnmarshalMsgpack", "func() ([]byte, error)", "func([]byte) error"},
	{"Gob", "GobEncode", "GobDecode", "func() ([]byte, error)", "func([]byte) error"},
	{"Binary", "MarshalBinary", "UnmarshalBinary", "func() ([]byte, error)", "func([]byte) error"},
	{"Text", "MarshalText", "UnmarshalText", "func() ([]byte, error)", "func([]byte) error"},
}

// rawTypes are types whose own methods lose what they carry, carried by
// their underlying type instead: net.IP's text turns an empty IP into nil
// and a 4-byte one into 16 bytes; its bytes are exact.
var rawTypes = map[string]bool{"net.IP": true}

// codecOf returns the method pair that n carries itself with (nil when it
// is carried by its structure), or why its methods cannot be trusted.
// Only methods declared on n (or *n) count: one promoted from an embedded
// field would carry that field alone. A pair counts when both methods are
// declared with the signatures of the interfaces (a MarshalText(w
// io.Writer) is not encoding.TextMarshaler, and msgpack ignores an
// EncodeMsgpack of another signature too).
func codecOf(n *types.Named) (*selfCodec, string) {
	if obj := n.Obj(); obj.Pkg() != nil && rawTypes[obj.Pkg().Path()+"."+obj.Name()] {
		return nil, ""
	}
	for i := range selfCodecs {
		sc := &selfCodecs[i]
		enc, dec := method(n, sc.enc), method(n, sc.dec)
		if enc == nil && dec == nil {
			continue
		}
		if sc.kind != "custom" {
			if enc != nil && dec != nil && sigString(enc, nil) == sc.encSig && sigString(dec, nil) == sc.decSig {
				return sc, ""
			}
			continue // not encoding's interfaces: carried by its structure, as by gob or json
		}
		switch {
		case enc == nil || dec == nil:
			have, want := sc.enc, sc.dec
			if enc == nil {
				have, want = sc.dec, sc.enc
			}
			return nil, fmt.Sprintf("%s declares %s but not %s: msgpack needs both to carry it", n.Obj().Name(), have, want)
		case sigString(enc, nil) != sc.encSig:
			return nil, fmt.Sprintf("%s.%s is %s, not msgpack's %s", n.Obj().Name(), sc.enc, sigString(enc, byName), shortSig(sc.encSig))
		case sigString(dec, nil) != sc.decSig:
			return nil, fmt.Sprintf("%s.%s is %s, not msgpack's %s", n.Obj().Name(), sc.dec, sigString(dec, byName), shortSig(sc.decSig))
		}
		return sc, ""
	}
	return nil, ""
}

// byName qualifies a type by its package's name, for messages.
func byName(p *types.Package) string { return p.Name() }

// shortSig is a signature of selfCodecs as messages spell it.
func shortSig(sig string) string { return strings.ReplaceAll(sig, msgpackPath+".", "msgpack.") }

// method returns the method named name declared on n or *n, or nil.
func method(n *types.Named, name string) *types.Func {
	for i := 0; i < n.NumMethods(); i++ {
		if m := n.Method(i); m.Name() == name {
			return m
		}
	}
	return nil
}

// sigString spells a method's signature without its receiver and its
// parameters' names, packages qualified by q (by path when nil).
func sigString(m *types.Func, q types.Qualifier) string {
	sig := m.Type().(*types.Signature)
	list := func(t *types.Tuple) []string {
		var l []string
		for i := 0; i < t.Len(); i++ {
			l = append(l, types.TypeString(t.At(i).Type(), q))
		}
		return l
	}
	ps, rs := list(sig.Params()), list(sig.Results())
	if sig.Variadic() {
		ps[len(ps)-1] = "..." + strings.TrimPrefix(ps[len(ps)-1], "[]")
	}
	out := "func(" + strings.Join(ps, ", ") + ")"
	switch len(rs) {
	case 0:
	case 1:
		out += " " + rs[0]
	default:
		out += " (" + strings.Join(rs, ", ") + ")"
	}
	return out
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
		if sc, _ := codecOf(t); sc != nil {
			b.WriteString("{" + sc.kind + "}")
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
		if boxedPointer(t.Elem()) {
			b.WriteString("box ")
		}
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
