package generator

import (
	"fmt"
	"go/types"
	"strings"
)

// Types that carry themselves: the method pairs the codecs trust, checked
// by signature.

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
	sc, why := methodPair(n)
	if sc != nil && why == "" && !pointerReceiver(method(n, sc.dec)) {
		return nil, fmt.Sprintf("%s.%s has a value receiver, so it cannot set what it decodes: declare it on *%s", n.Obj().Name(), sc.dec, n.Obj().Name())
	}
	return sc, why
}

// lossyTypes are types whose own methods lose part of the value and whose
// structure cannot be carried either: refused, saying what to carry.
var lossyTypes = map[string]string{
	"net/url.URL":   "url.URL's MarshalBinary is its String(), which does not give back every field (RawPath, OmitHost, ForceQuery): carry u.String() and parse it",
	"regexp.Regexp": "regexp.Regexp's text drops Longest(): carry its String() and compile it",
}

func pointerReceiver(m *types.Func) bool {
	_, ok := m.Type().(*types.Signature).Recv().Type().(*types.Pointer)
	return ok
}

// methodPair is codecOf before the receiver check.
func methodPair(n *types.Named) (*selfCodec, string) {
	if obj := n.Obj(); obj.Pkg() != nil {
		if why, lossy := lossyTypes[obj.Pkg().Path()+"."+obj.Name()]; lossy {
			return nil, why
		}
		if rawTypes[obj.Pkg().Path()+"."+obj.Name()] {
			return nil, ""
		}
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
