package generator

import (
	"go/types"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dave/jennifer/jen"
)

// Codecs: one encode and one decode function per type a wrapper sends,
// typed code for basic kinds, []byte, time.Time, slices, arrays, maps with
// ordered keys (written in sorted key order), pointers, and structs of
// exported fields (written as an array of the fields in order); types that
// encode themselves (msgpack.CustomEncoder, Marshaler) and the rest go
// through msgpack's reflective Encode/Decode (with sorted map keys).

// index returns the codec of t (adding it), and the name its functions
// share: the type spelled as an identifier (dlockEncUser,
// dlockDecSliceString), so that adding a wrapper does not rename the
// others' codecs.
func (e *emitter) index(t types.Type) int {
	k := types.TypeString(t, nil)
	if i, ok := e.codecs[k]; ok {
		return i
	}
	name := typeSlug(t, e.pkg.Types) + e.codecSuffix
	for n := 2; e.slugs[name]; n++ { // two types that spell alike
		name = typeSlug(t, e.pkg.Types) + strconv.Itoa(n) + e.codecSuffix
	}
	e.slugs[name] = true
	e.codecs[k] = len(e.order)
	e.order = append(e.order, t)
	e.names = append(e.names, name)
	return len(e.order) - 1
}

func (e *emitter) encName(t types.Type) string { return "dlockEnc" + e.names[e.index(t)] }
func (e *emitter) decName(t types.Type) string { return "dlockDec" + e.names[e.index(t)] }

// typeSlug spells t as the tail of an identifier.
func typeSlug(t types.Type, here *types.Package) string {
	switch t := t.(type) {
	case *types.Alias:
		return typeSlug(types.Unalias(t), here)
	case *types.Named:
		s := t.Obj().Name()
		if p := t.Obj().Pkg(); p != nil && p != here {
			s = upperFirst(p.Name()) + upperFirst(s)
		}
		if args := t.TypeArgs(); args != nil {
			for i := 0; i < args.Len(); i++ {
				s += "Of" + typeSlug(args.At(i), here)
			}
		}
		return upperFirst(s)
	case *types.Basic:
		return upperFirst(t.Name())
	case *types.Pointer:
		return "Ptr" + typeSlug(t.Elem(), here)
	case *types.Slice:
		return "Slice" + typeSlug(t.Elem(), here)
	case *types.Array:
		return "Array" + strconv.FormatInt(t.Len(), 10) + typeSlug(t.Elem(), here)
	case *types.Map:
		return "Map" + typeSlug(t.Key(), here) + "To" + typeSlug(t.Elem(), here)
	}
	return "Value"
}

// upperFirst upper-cases s's first letter (a rune, not a byte: "über"
// becomes "Über"); a letter with no upper case stays as it is.
func upperFirst(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 {
		return s
	}
	return string(unicode.ToUpper(r)) + s[n:]
}

// basic kinds: the Encoder method, the conversion, the Decoder method.
var basicCodec = map[codecKind][3]string{
	kindBool:    {"EncodeBool", "bool", "DecodeBool"},
	kindString:  {"EncodeString", "string", "DecodeString"},
	kindInt:     {"EncodeInt", "int64", "DecodeInt64"},
	kindUint:    {"EncodeUint", "uint64", "DecodeUint64"},
	kindFloat32: {"EncodeFloat32", "float32", "DecodeFloat32"},
	kindFloat64: {"EncodeFloat64", "float64", "DecodeFloat64"},
	kindBytes:   {"EncodeBytes", "[]byte", "DecodeBytes"},
}

func (e *emitter) codec(i int, t types.Type) {
	idx := e.names[i]
	tc := e.typ(t)
	enc := jen.Id("enc")
	dec := jen.Id("dec")
	ifErr := func(call jen.Code, ret ...jen.Code) jen.Code {
		return jen.If(jen.Err().Op(":=").Add(call), jen.Err().Op("!=").Nil()).Block(jen.Return(append(ret, jen.Err())...))
	}
	w := e.wire.of(t)
	var encBody, decBody []jen.Code
	switch k := w.kind; k {
	case kindTime:
		encBody = []jen.Code{jen.Return(jen.Qual(genrtPath, "EncodeTime").Call(enc, jen.Id("v")))}
		decBody = []jen.Code{jen.Return(jen.Qual(genrtPath, "DecodeTime").Call(dec))}
	case kindMethods:
		encBody, decBody = e.methodsCodec(w, tc)
	case kindBool, kindString, kindInt, kindUint, kindFloat32, kindFloat64, kindBytes:
		c := basicCodec[k]
		conv := jen.Id(c[1])
		if k == kindBytes {
			conv = jen.Index().Byte()
		}
		val, x := jen.Code(conv.Call(jen.Id("v"))), jen.Code(jen.Add(tc).Call(jen.Id("x")))
		if types.TypeString(t, nil) == c[1] { // no conversion needed
			val, x = jen.Id("v"), jen.Id("x")
		}
		encBody = []jen.Code{jen.Return(enc.Clone().Dot(c[0]).Call(val))}
		decBody = []jen.Code{
			jen.List(jen.Id("x"), jen.Err()).Op(":=").Add(dec.Clone().Dot(c[2]).Call()),
			jen.Return(x, jen.Err()),
		}
	case kindStruct:
		fs := w.carried()
		// A struct that holds a lock is decoded in place (v is a pointer);
		// others are returned.
		var ret []jen.Code
		if !w.byRef() {
			ret = []jen.Code{jen.Id("v")}
		}
		encBody = []jen.Code{ifErr(enc.Clone().Dot("EncodeArrayLen").Call(jen.Lit(len(fs))))}
		decBody = []jen.Code{
			jen.List(jen.Id("n"), jen.Err()).Op(":=").Add(dec.Clone().Dot("DecodeArrayLen").Call()),
			jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(append(ret, jen.Err())...)),
			jen.If(jen.Id("n").Op("!=").Lit(len(fs))).Block(jen.Return(append(ret, jen.Qual(runtimePath, "ErrDecode"))...)),
		}
		if !w.byRef() {
			decBody = append([]jen.Code{jen.Var().Id("v").Add(tc)}, decBody...)
		}
		for _, f := range fs {
			field := jen.Id("v").Dot(f.v.Name())
			encBody = append(encBody, ifErr(e.encodeCall(f.wire, field)))
			decBody = append(decBody, e.decodeInto(f.wire, field, ret...))
		}
		encBody = append(encBody, jen.Return(jen.Nil()))
		decBody = append(decBody, jen.Return(append(ret, jen.Nil())...))
	case kindSlice, kindArray:
		elem := w.elem.t
		if k == kindSlice {
			encBody = append(encBody, jen.If(jen.Id("v").Op("==").Nil()).Block(jen.Return(enc.Clone().Dot("EncodeNil").Call())))
		}
		encBody = append(encBody,
			ifErr(enc.Clone().Dot("EncodeArrayLen").Call(jen.Len(jen.Id("v")))),
			jen.Return(jen.Nil()))
		each := jen.For(jen.List(jen.Id("_"), jen.Id("x")).Op(":=").Range().Id("v")).Block(ifErr(jen.Id(e.encName(elem)).Call(enc, jen.Id("x"))))
		if w.elem.byRef() { // by index: a range variable would copy its lock
			each = jen.For(jen.Id("i").Op(":=").Range().Id("v")).Block(ifErr(e.encodeCall(w.elem, jen.Id("v").Index(jen.Id("i")))))
		}
		encBody = slices.Insert(encBody, len(encBody)-1, jen.Code(each))
		if k == kindSlice && w.elem.byRef() {
			// Each element decoded in place: a copy would copy its lock.
			decBody = []jen.Code{
				jen.List(jen.Id("n"), jen.Err()).Op(":=").Add(dec.Clone().Dot("DecodeArrayLen").Call()),
				jen.If(jen.Err().Op("!=").Nil().Op("||").Id("n").Op("<").Lit(0)).Block(jen.Return(jen.Nil(), jen.Err())),
				jen.Id("v").Op(":=").Make(tc, jen.Lit(0), jen.Qual(genrtPath, "SliceCap").Call(jen.Id("n"))),
				jen.For(jen.Range().Id("n")).Block(
					jen.Id("v").Op("=").Append(jen.Id("v"), e.typ(elem).(*jen.Statement).Clone().Values()),
					jen.If(jen.Err().Op(":=").Id(e.decName(elem)).Call(dec, jen.Op("&").Id("v").Index(jen.Len(jen.Id("v")).Op("-").Lit(1))), jen.Err().Op("!=").Nil()).Block(
						jen.Return(jen.Nil(), jen.Err()))),
				jen.Return(jen.Id("v"), jen.Nil()),
			}
		} else if k == kindSlice {
			decBody = []jen.Code{
				jen.List(jen.Id("n"), jen.Err()).Op(":=").Add(dec.Clone().Dot("DecodeArrayLen").Call()),
				jen.If(jen.Err().Op("!=").Nil().Op("||").Id("n").Op("<").Lit(0)).Block(jen.Return(jen.Nil(), jen.Err())),
				jen.Id("v").Op(":=").Make(tc, jen.Lit(0), jen.Qual(genrtPath, "SliceCap").Call(jen.Id("n"))),
				jen.For(jen.Range().Id("n")).Block(
					jen.List(jen.Id("x"), jen.Err()).Op(":=").Id(e.decName(elem)).Call(dec),
					jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Nil(), jen.Err())),
					jen.Id("v").Op("=").Append(jen.Id("v"), jen.Id("x"))),
				jen.Return(jen.Id("v"), jen.Nil()),
			}
		} else {
			decBody = []jen.Code{
				jen.Var().Id("v").Add(tc),
				jen.List(jen.Id("n"), jen.Err()).Op(":=").Add(dec.Clone().Dot("DecodeArrayLen").Call()),
				jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Id("v"), jen.Err())),
				jen.If(jen.Id("n").Op("!=").Len(jen.Id("v"))).Block(jen.Return(jen.Id("v"), jen.Qual(runtimePath, "ErrDecode"))),
				jen.For(jen.Id("i").Op(":=").Range().Id("v")).Block(
					e.decodeInto(w.elem, jen.Id("v").Index(jen.Id("i")), jen.Id("v"))),
				jen.Return(jen.Id("v"), jen.Nil()),
			}
		}
	case kindPointer:
		elem := w.elem.t
		encBody = []jen.Code{jen.If(jen.Id("v").Op("==").Nil()).Block(jen.Return(enc.Clone().Dot("EncodeNil").Call()))}
		decBody = []jen.Code{jen.If(jen.Qual(genrtPath, "PeekNil").Call(dec)).Block(jen.Return(jen.Nil(), dec.Clone().Dot("DecodeNil").Call()))}
		if w.boxed {
			// In an array of one, so that pointing at a nil (a *[]T at a
			// nil slice) does not read back as a nil pointer.
			encBody = append(encBody, ifErr(enc.Clone().Dot("EncodeArrayLen").Call(jen.Lit(1))))
			decBody = append(decBody,
				jen.If(jen.List(jen.Id("n"), jen.Err()).Op(":=").Add(dec.Clone().Dot("DecodeArrayLen").Call()), jen.Err().Op("!=").Nil().Op("||").Id("n").Op("!=").Lit(1)).Block(
					jen.Return(jen.Nil(), jen.Qual("cmp", "Or").Call(jen.Err(), jen.Qual(runtimePath, "ErrDecode")))))
		}
		if w.elem.byRef() {
			encBody = append(encBody, jen.Return(jen.Id(e.encName(elem)).Call(enc, jen.Id("v"))))
			decBody = append(decBody,
				jen.Id("x").Op(":=").New(e.typ(elem)),
				jen.Return(jen.Id("x"), jen.Id(e.decName(elem)).Call(dec, jen.Id("x"))))
		} else {
			encBody = append(encBody, jen.Return(jen.Id(e.encName(elem)).Call(enc, jen.Op("*").Id("v"))))
			decBody = append(decBody,
				jen.List(jen.Id("x"), jen.Err()).Op(":=").Id(e.decName(elem)).Call(dec),
				jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Nil(), jen.Err())),
				jen.Return(jen.Op("&").Id("x"), jen.Nil()))
		}
	case kindMap:
		m := struct{ key, elem types.Type }{w.key.t, w.elem.t}
		// Entries, not keys then lookups: a NaN key cannot be looked up.
		entry := jen.Id("dlockEntry") // not entry: the key or value type may be named so
		encBody = []jen.Code{
			jen.If(jen.Id("v").Op("==").Nil()).Block(jen.Return(enc.Clone().Dot("EncodeNil").Call())),
			ifErr(enc.Clone().Dot("EncodeMapLen").Call(jen.Len(jen.Id("v")))),
			jen.Type().Id("dlockEntry").Struct(jen.Id("k").Add(e.typ(m.key)), jen.Id("x").Add(e.typ(m.elem))),
			jen.Id("es").Op(":=").Make(jen.Index().Add(entry), jen.Lit(0), jen.Len(jen.Id("v"))),
			jen.For(jen.List(jen.Id("k"), jen.Id("x")).Op(":=").Range().Id("v")).Block(
				jen.Id("es").Op("=").Append(jen.Id("es"), jen.Add(entry).Values(jen.Id("k"), jen.Id("x")))),
			jen.Qual("slices", "SortFunc").Call(jen.Id("es"), jen.Func().Params(jen.List(jen.Id("a"), jen.Id("b")).Add(entry)).Int().Block(
				jen.Return(jen.Qual("cmp", "Compare").Call(jen.Id("a").Dot("k"), jen.Id("b").Dot("k"))))),
			jen.For(jen.List(jen.Id("_"), jen.Id("e")).Op(":=").Range().Id("es")).Block(
				ifErr(jen.Id(e.encName(m.key)).Call(enc, jen.Id("e").Dot("k"))),
				ifErr(jen.Id(e.encName(m.elem)).Call(enc, jen.Id("e").Dot("x")))),
			jen.Return(jen.Nil()),
		}
		decBody = []jen.Code{
			jen.List(jen.Id("n"), jen.Err()).Op(":=").Add(dec.Clone().Dot("DecodeMapLen").Call()),
			jen.If(jen.Err().Op("!=").Nil().Op("||").Id("n").Op("<").Lit(0)).Block(jen.Return(jen.Nil(), jen.Err())),
			jen.Id("v").Op(":=").Make(tc, jen.Qual(genrtPath, "SliceCap").Call(jen.Id("n"))),
			jen.For(jen.Range().Id("n")).Block(
				jen.List(jen.Id("k"), jen.Err()).Op(":=").Id(e.decName(m.key)).Call(dec),
				jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Nil(), jen.Err())),
				jen.List(jen.Id("x"), jen.Err()).Op(":=").Id(e.decName(m.elem)).Call(dec),
				jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Nil(), jen.Err())),
				jen.Id("v").Index(jen.Id("k")).Op("=").Id("x")),
			jen.Return(jen.Id("v"), jen.Nil()),
		}
	}
	if k := w.kind; (k == kindPointer || k == kindSlice || k == kindMap) && w.recursive() {
		// A value of a recursive type may be a cycle: a depth bound turns
		// it into an error, where it would overflow the stack.
		encBody = append([]jen.Code{
			jen.If(jen.Err().Op(":=").Qual(genrtPath, "Descend").Call(enc), jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Err())),
			jen.Defer().Qual(genrtPath, "Ascend").Call(enc),
		}, encBody...)
		decBody = append([]jen.Code{
			jen.If(jen.Err().Op(":=").Qual(genrtPath, "Descend").Call(dec), jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Nil(), jen.Err())),
			jen.Defer().Qual(genrtPath, "Ascend").Call(dec),
		}, decBody...)
	}
	if w.kind == kindStruct {
		// First, so that the compiler's first error is the one that says why.
		if g := e.shapeGuard(t); g != nil {
			e.f.Commentf("The fields dlockEnc%s and dlockDec%s were generated for: if this", idx, idx)
			e.f.Commentf("stops compiling, %s changed since; run go generate.", types.TypeString(t, types.RelativeTo(e.pkg.Types)))
			e.f.Add(g)
			e.f.Line()
		} else if g := e.fieldsCheck(t); g != nil {
			e.f.Commentf("The fields dlockEnc%s and dlockDec%s were generated for (some cannot", idx, idx)
			e.f.Commentf("be named here): the program panics at start, saying to run go generate,")
			e.f.Commentf("when %s has others.", types.TypeString(t, types.RelativeTo(e.pkg.Types)))
			e.f.Add(g)
			e.f.Line()
		}
	}
	name := types.TypeString(t, types.RelativeTo(e.pkg.Types))
	if w.byRef() {
		e.f.Commentf("dlockEnc%s encodes %s %s, through a pointer: it holds a lock.", idx, article(name), name)
		e.f.Func().Id("dlockEnc"+idx).Params(jen.Id("enc").Op("*").Qual(msgpackPath, "Encoder"), jen.Id("v").Op("*").Add(tc)).Error().Block(encBody...)
		e.f.Line()
		e.f.Commentf("dlockDec%s decodes %s %s into *v: it holds a lock.", idx, article(name), name)
		e.f.Func().Id("dlockDec"+idx).Params(jen.Id("dec").Op("*").Qual(msgpackPath, "Decoder"), jen.Id("v").Op("*").Add(tc)).Error().Block(decBody...)
		return
	}
	e.f.Commentf("dlockEnc%s encodes %s %s.", idx, article(name), name)
	e.f.Func().Id("dlockEnc"+idx).Params(jen.Id("enc").Op("*").Qual(msgpackPath, "Encoder"), jen.Id("v").Add(tc)).Error().Block(encBody...)
	e.f.Line()
	e.f.Commentf("dlockDec%s decodes %s %s.", idx, article(name), name)
	e.f.Func().Id("dlockDec"+idx).Params(jen.Id("dec").Op("*").Qual(msgpackPath, "Decoder")).Params(tc, jen.Error()).Block(decBody...)
}

// methodsCodec is the codec of a type that carries itself: its methods
// called directly (msgpack's reflection could pick a method promoted from
// an embedded field instead), through v itself when w holds a lock (v is
// then a pointer), else through &v.
func (e *emitter) methodsCodec(w *wireType, tc jen.Code) (encBody, decBody []jen.Code) {
	sc, enc, dec := w.self, jen.Id("enc"), jen.Id("dec")
	recv := jen.Parens(jen.Op("&").Id("v"))
	var ret []jen.Code // what decoders return before the error
	if w.byRef() {
		recv = jen.Id("v")
	} else {
		ret = []jen.Code{jen.Id("v")}
		decBody = []jen.Code{jen.Var().Id("v").Add(tc)}
	}
	fail := jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(append(ret, jen.Err())...))
	switch sc.enc {
	case "EncodeMsgpack":
		encBody = []jen.Code{jen.Return(recv.Clone().Dot(sc.enc).Call(enc))}
		decBody = append(decBody, jen.Err().Op(":=").Add(recv.Clone().Dot(sc.dec).Call(dec)))
	case "MarshalMsgpack": // msgpack of its own, written as it is
		encBody = []jen.Code{
			jen.List(jen.Id("b"), jen.Err()).Op(":=").Add(recv.Clone().Dot(sc.enc).Call()),
			jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Err())),
			jen.Return(enc.Clone().Dot("Encode").Call(jen.Qual(msgpackPath, "RawMessage").Call(jen.Id("b")))),
		}
		decBody = append(decBody,
			jen.List(jen.Id("b"), jen.Err()).Op(":=").Add(dec.Clone().Dot("DecodeRaw").Call()),
			fail,
			jen.Err().Op("=").Add(recv.Clone().Dot(sc.dec).Call(jen.Id("b"))))
	default: // gob, binary, text: bytes
		encBody = []jen.Code{
			jen.List(jen.Id("b"), jen.Err()).Op(":=").Add(recv.Clone().Dot(sc.enc).Call()),
			jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Err())),
			jen.Return(enc.Clone().Dot("EncodeBytes").Call(jen.Id("b"))),
		}
		decBody = append(decBody,
			jen.List(jen.Id("b"), jen.Err()).Op(":=").Add(dec.Clone().Dot("DecodeBytes").Call()),
			fail,
			jen.Err().Op("=").Add(recv.Clone().Dot(sc.dec).Call(jen.Id("b"))))
	}
	// The error after the call: "return v, f(&v)" may read v first.
	return encBody, append(decBody, jen.Return(append(ret, jen.Err())...))
}

// encodeCall calls w's encoder on the value v (by its address when w's
// codecs take a pointer).
func (e *emitter) encodeCall(w *wireType, v *jen.Statement) jen.Code {
	if w.byRef() {
		return jen.Id(e.encName(w.t)).Call(jen.Id("enc"), jen.Op("&").Add(v))
	}
	return jen.Id(e.encName(w.t)).Call(jen.Id("enc"), v)
}

// decodeInto decodes a w into dst, returning ret and the error on failure.
func (e *emitter) decodeInto(w *wireType, dst *jen.Statement, ret ...jen.Code) jen.Code {
	fail := jen.Return(append(ret, jen.Err())...)
	if w.byRef() {
		return jen.If(jen.Err().Op(":=").Id(e.decName(w.t)).Call(jen.Id("dec"), jen.Op("&").Add(dst)), jen.Err().Op("!=").Nil()).Block(fail)
	}
	return jen.If(jen.List(dst, jen.Err()).Op("=").Id(e.decName(w.t)).Call(jen.Id("dec")), jen.Err().Op("!=").Nil()).Block(fail)
}

// article is "an" before a type spelled with a vowel first ("an int",
// "an Item"), else "a" ("a []int", "a uint8", as they are read).
func article(typ string) string {
	if typ != "" && strings.ContainsRune("aeioAEIO", rune(typ[0])) {
		return "an"
	}
	return "a"
}
