package generator

import (
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"strings"
	"testing"
)

// A type carries itself only through a method pair with the interfaces'
// exact signatures (go/types decides, not the names): the first of
// msgpack's, gob's, binary, text; a msgpack method of another signature,
// or without its partner, is a refusal; a text method of another
// signature is no marshaler at all.
func TestCodecOf_signaturesNotNames(t *testing.T) {
	src := `package p

import (
	"io"
	"github.com/vmihailenco/msgpack/v5"
)

type Custom struct{ a int }
func (*Custom) EncodeMsgpack(*msgpack.Encoder) error { return nil }
func (*Custom) DecodeMsgpack(*msgpack.Decoder) error { return nil }

type Extra struct{ a int }
func (*Extra) EncodeMsgpack(*msgpack.Encoder, int) error { return nil }
func (*Extra) DecodeMsgpack(*msgpack.Decoder) error      { return nil }

type Half struct{ a int }
func (Half) MarshalMsgpack() ([]byte, error) { return nil, nil }

type Both struct{ a int }
func (Both) GobEncode() ([]byte, error)      { return nil, nil }
func (*Both) GobDecode([]byte) error         { return nil }
func (Both) MarshalText() ([]byte, error)    { return nil, nil }
func (*Both) UnmarshalText([]byte) error     { return nil }

type Writer struct{ a int }
func (Writer) MarshalText(io.Writer) error   { return nil }
func (*Writer) UnmarshalText([]byte) error   { return nil }

type Text struct{ a int }
func (Text) MarshalText() ([]byte, error)    { return nil, nil }
func (*Text) UnmarshalText([]byte) error     { return nil }
`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "p.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := (&types.Config{Importer: importer.ForCompiler(fset, "source", nil)}).Check("example.com/p", fset, []*ast.File{f}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]struct{ kind, why string }{
		"Custom": {kind: "custom"},
		"Extra":  {why: "Extra.EncodeMsgpack is func(*msgpack.Encoder, int) error, not msgpack's func(*msgpack.Encoder) error"},
		"Half":   {why: "Half declares MarshalMsgpack but not UnmarshalMsgpack"},
		"Both":   {kind: "Gob"},
		"Writer": {},
		"Text":   {kind: "Text"},
	} {
		sc, why := codecOf(pkg.Scope().Lookup(name).Type().(*types.Named))
		kind := ""
		if sc != nil {
			kind = sc.kind
		}
		if kind != want.kind || !strings.HasPrefix(why, want.why) || (want.why == "") != (why == "") {
			t.Errorf("%s: carried by %q (%q); want %q (%q)", name, kind, why, want.kind, want.why)
		}
	}
}
