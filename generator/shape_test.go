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

// resultType type-checks a package "example.com/p" declaring decls and
// returns its type R.
func resultType(t *testing.T, decls string) types.Type {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "p.go", "package p\n\nimport \"time\"\n\nvar _ time.Time\n\n"+decls, 0)
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := (&types.Config{Importer: importer.Default()}).Check("example.com/p", fset, []*ast.File{f}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return pkg.Scope().Lookup("R").Type()
}

// P23: a result shape changes with every detail that changes the bytes
// its codec writes (so two builds that disagree never share a flight), and
// only with those.
func TestShapeHash_changesWithWhatTheCodecEncodes(t *testing.T) {
	base := "type R struct {\n\tID int64\n\tName string `msgpack:\"name\"`\n\tInner\n}\n\ntype Inner struct{ At time.Time }\n"
	h := shapeHash(&wireTypes{}, []types.Type{resultType(t, base)})
	if again := shapeHash(&wireTypes{}, []types.Type{resultType(t, base)}); again != h {
		t.Fatalf("the same type hashes to %s and %s", h, again)
	}
	for name, decls := range map[string]string{
		"a field added":         "type R struct {\n\tID int64\n\tName string `msgpack:\"name\"`\n\tInner\n\tEmail string\n}\n\ntype Inner struct{ At time.Time }\n",
		"a field renamed":       "type R struct {\n\tKey int64\n\tName string `msgpack:\"name\"`\n\tInner\n}\n\ntype Inner struct{ At time.Time }\n",
		"a field's type":        "type R struct {\n\tID int32\n\tName string `msgpack:\"name\"`\n\tInner\n}\n\ntype Inner struct{ At time.Time }\n",
		"a tag":                 "type R struct {\n\tID int64\n\tName string `msgpack:\"n\"`\n\tInner\n}\n\ntype Inner struct{ At time.Time }\n",
		"embedded or named":     "type R struct {\n\tID int64\n\tName string `msgpack:\"name\"`\n\tInner Inner\n}\n\ntype Inner struct{ At time.Time }\n",
		"a nested type's field": "type R struct {\n\tID int64\n\tName string `msgpack:\"name\"`\n\tInner\n}\n\ntype Inner struct{ At, To time.Time }\n",
	} {
		if got := shapeHash(&wireTypes{}, []types.Type{resultType(t, decls)}); got == h {
			t.Errorf("%s: the shape hash stayed %s", name, h)
		}
	}
}

// A pointer to what may encode as nil is written boxed (an array of one),
// and the shape says so: a build that wrote it bare (and read a pointer
// at a nil slice back as a nil pointer) never shares a flight with one
// that boxes it. A pointer to a struct or a number stays bare.
func TestShapeHash_boxedPointersHaveTheirOwnShape(t *testing.T) {
	shape := func(decls string) string {
		var b strings.Builder
		ws := &wireTypes{}
		writeShape(&b, ws, ws.of(resultType(t, decls)), map[*types.Named]bool{})
		return b.String()
	}
	for decls, boxed := range map[string]bool{
		"type R struct{ P *[]int }":           true,
		"type R struct{ P **int }":            true,
		"type R struct{ P *map[string]int }":  true,
		"type R struct{ P *[]byte }":          true,
		"type R struct{ P *int }":             false,
		"type R struct{ P *struct{ A int } }": false,
		"type R struct{ P *time.Time }":       false,
	} {
		if got := strings.Contains(shape(decls), "*box "); got != boxed {
			t.Errorf("%s: boxed %v; want %v (shape %s)", decls, got, boxed, shape(decls))
		}
	}
}
