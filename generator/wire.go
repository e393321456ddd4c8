package generator

import (
	"go/types"
	"reflect"
	"strings"

	"golang.org/x/tools/go/types/typeutil"
)

// The wire model: how each Go type crosses the wire, decided once, here.
// The codecs are emitted from it (codec.go), the reason a type is refused
// is read from it (refusal.go), and the shape hash that keeps builds of
// different shapes apart is written from it (shape.go), so they cannot
// disagree. Supporting a new kind of type is a change to this file and
// to the codec template of its kind.

// codecKind classifies how a type is encoded.
type codecKind int

const (
	kindReflect codecKind = iota
	kindTime
	kindBool
	kindString
	kindInt
	kindUint
	kindFloat32
	kindFloat64
	kindBytes
	kindSlice
	kindArray
	kindPointer
	kindMap
	kindStruct
	kindMethods // a gob, binary or text marshaler pair (codecOf)
)

// wireType is how one Go type crosses the wire.
type wireType struct {
	t       types.Type
	kind    codecKind
	self    *selfCodec // the methods it carries itself with (kindMethods)
	selfWhy string     // why its msgpack methods cannot be trusted, when they cannot
	elem    *wireType  // pointer, slice, array: the element; map: the value
	key     *wireType  // map: the key
	fields  []wireField
	boxed   bool   // a pointer written as an array of one (elem may encode as nil)
	lock    string // where it holds a lock by value (heldLock), or ""
}

// wireField is a struct field as the codecs see it.
type wireField struct {
	v    *types.Var
	tag  string
	skip bool // left out: see skippedField
	wire *wireType
}

// byRef reports whether w's codecs take a pointer (to encode) and write
// through one (to decode): a struct that holds a lock, which a copy would
// copy.
func (w *wireType) byRef() bool {
	return (w.kind == kindStruct || w.kind == kindMethods) && w.lock != ""
}

// carried are the fields a struct codec writes, in order.
func (w *wireType) carried() []wireField {
	var fs []wireField
	for _, f := range w.fields {
		if !f.skip {
			fs = append(fs, f)
		}
	}
	return fs
}

// wireTypes builds and keeps the wire model of the types one package
// sends (identical types share one wireType, so recursive types are
// graphs).
type wireTypes struct{ m typeutil.Map }

// of returns t's wire type. A node's kind is set before its children are
// built, so a recursive type's node is complete enough when reached again.
func (ws *wireTypes) of(t types.Type) *wireType {
	if w, ok := ws.m.At(t).(*wireType); ok {
		return w
	}
	w := &wireType{t: t, lock: heldLock(t)}
	ws.m.Set(t, w)
	if n, ok := types.Unalias(t).(*types.Named); ok {
		if isTime(n) {
			w.kind = kindTime
			return w
		}
		if w.self, w.selfWhy = codecOf(n); w.self != nil {
			w.kind = kindMethods
			return w
		}
	}
	w.kind = kindReflect
	switch u := t.Underlying().(type) {
	case *types.Basic:
		w.kind = basicKind(u)
	case *types.Slice:
		w.kind = kindSlice
		if types.Identical(u.Elem(), types.Typ[types.Byte]) {
			w.kind = kindBytes
		}
		w.elem = ws.of(u.Elem())
	case *types.Array:
		w.kind = kindArray
		w.elem = ws.of(u.Elem())
	case *types.Pointer:
		w.kind = kindPointer
		w.elem = ws.of(u.Elem())
		w.boxed = mayEncodeNil(w.elem.kind)
	case *types.Map:
		if k, ok := u.Key().Underlying().(*types.Basic); ok && k.Info()&types.IsOrdered != 0 {
			w.kind = kindMap
		}
		w.key, w.elem = ws.of(u.Key()), ws.of(u.Elem())
	case *types.Struct:
		w.kind = kindStruct
		for i := 0; i < u.NumFields(); i++ {
			f := wireField{v: u.Field(i), tag: u.Tag(i), skip: skippedField(u, i)}
			if !f.v.Exported() && !f.skip {
				w.kind = kindReflect // refused: msgpack would drop it
			}
			w.fields = append(w.fields, f)
		}
		for i := range w.fields {
			w.fields[i].wire = ws.of(w.fields[i].v.Type())
		}
	}
	return w
}

// basicKind is the codec kind of a basic type (kindReflect for those
// msgpack does not carry, refused).
func basicKind(u *types.Basic) codecKind {
	switch {
	case u.Info()&types.IsBoolean != 0:
		return kindBool
	case u.Info()&types.IsString != 0:
		return kindString
	case u.Info()&types.IsUnsigned != 0:
		return kindUint
	case u.Info()&types.IsInteger != 0:
		return kindInt
	case u.Kind() == types.Float32:
		return kindFloat32
	case u.Kind() == types.Float64:
		return kindFloat64
	}
	return kindReflect
}

// mayEncodeNil reports whether a value of a kind may be written as nil (a
// pointer, slice, map, bytes, or a type's own methods): a pointer to it is
// boxed, so that pointing at a nil does not read back as a nil pointer.
func mayEncodeNil(k codecKind) bool {
	switch k {
	case kindBool, kindString, kindInt, kindUint, kindFloat32, kindFloat64, kindStruct, kindArray, kindTime:
		return false
	}
	return true
}

// skippedField reports whether struct codecs leave field i of u out:
// tagged msgpack:"-", blank (_: padding, or a marker; nothing can be
// exported or read there), a bare lock (sync.Mutex: another process has
// no use for its state), or unexported and of no size. These carried
// nothing before either: they were refused as unexported.
func skippedField(u *types.Struct, i int) bool {
	f := u.Field(i)
	return reflectTag(u.Tag(i)) == "-" || f.Name() == "_" || bareLock(f.Type()) || !f.Exported() && zeroSize(f.Type())
}

// reflectTag returns the msgpack tag's name part.
func reflectTag(tag string) string {
	name, _, _ := strings.Cut(reflect.StructTag(tag).Get("msgpack"), ",")
	return name
}

// recursive reports whether w reaches itself (through pointers, slices,
// maps, arrays or struct fields), so that a value of it may be a cycle.
func (w *wireType) recursive() bool {
	seen := map[*wireType]bool{}
	var reaches func(v *wireType) bool
	reaches = func(v *wireType) bool {
		if v == w {
			return true
		}
		if v == nil || seen[v] {
			return false
		}
		seen[v] = true
		return v.reachesAny(reaches)
	}
	return w.reachesAny(reaches)
}

// reachesAny applies f to w's children until it returns true. A type that
// carries itself has none: its codec calls its methods.
func (w *wireType) reachesAny(f func(*wireType) bool) bool {
	if w.self != nil {
		return false
	}
	if f(w.elem) || f(w.key) {
		return true
	}
	for _, fl := range w.fields {
		if f(fl.wire) {
			return true
		}
	}
	return false
}
