package generator

import (
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"strings"
	"testing"
	"time"

	"golang.org/x/tools/go/packages"
)

// modelPackage type-checks src as package example.com/p, as the emitter
// receives a package (no files on disk, no directives).
func modelPackage(t *testing.T, src string) *packages.Package {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "/src/p/p.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	tpkg, err := (&types.Config{Importer: importer.Default()}).Check("example.com/p", fset, []*ast.File{f}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &packages.Package{PkgPath: "example.com/p", Name: "p", Types: tpkg, Fset: fset, Syntax: []*ast.File{f}}
}

// The emitter reads only the model: wrappers built by hand (no directive
// parsed) emit what their typed fields say, whatever the directive's text.
func TestEmit_fromAModel(t *testing.T) {
	pkg := modelPackage(t, `package p

import "context"

type User struct{ Name string; Tags *[]string }

func load(ctx context.Context, id int) (User, error) { return User{}, nil }

func export(ctx context.Context, id int) error { return nil }
`)
	scope := pkg.Types.Scope()
	idParam := []param{{name: "id", typ: types.Typ[types.Int], id: "id"}}
	key := []keyPart{{lit: "u:"}, {param: "id"}}
	fanout := &wrapper{verb: verbFanout, settings: settings{ttl: 3 * time.Second, timeout: 1500 * time.Millisecond},
		text: "(the text is not read)", pos: token.Position{Filename: "/src/p/p.go"}, fn: scope.Lookup("load").(*types.Func),
		name: "Load", ctxName: "ctx", params: idParam, results: []types.Type{scope.Lookup("User").Type()},
		key: key, space: "example.com/p.load#0000", named: "example.com/p.load"}
	sem := &wrapper{verb: verbSemaphore, settings: settings{ttl: time.Minute, waitSet: true, limit: 4},
		text: "(the text is not read)", pos: token.Position{Filename: "/src/p/p.go"}, fn: scope.Lookup("export").(*types.Func),
		name: "Export", ctxName: "ctx", params: idParam, key: key, space: "example.com/p.export", named: "example.com/p.export"}
	out, err := emit(pkg, []*wrapper{fanout, sem}, "", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	src := string(out)
	for _, want := range []string{
		"func Load(ctx context.Context, id int) (User, error) {",
		`dlockKey := "example.com/p.load#0000:u:" + genrt.KeyValue(strconv.FormatInt(int64(id), 10), ":")`,
		"dlockEncUser, dlockDecUser, dlockrt.WithTTL(3*time.Second), dlockrt.WithTimeout(1500*time.Millisecond))",
		"func dlockEncPtrSliceString(", // the boxed pointer's codec
		"if err := enc.EncodeArrayLen(1); err != nil {",
		"while holding one of 4 permits for its key.\n// When none is free it returns at once an error matching dlockrt.ErrNotAcquired.",
		"dlockC.Semaphore(dlockKey, 4).TryAcquire(ctx, dlockrt.WithTTL(1*time.Minute))",
	} {
		if !strings.Contains(src, want) {
			t.Errorf("the output lacks %q:\n%s", want, src)
		}
	}
	// The same semaphore waiting 250ms, then without wait=.
	sem.wait = 250 * time.Millisecond
	out, _ = emit(pkg, []*wrapper{sem}, "", "", nil, nil)
	if !strings.Contains(string(out), "dlockWait, dlockCancel := context.WithTimeout(ctx, 250*time.Millisecond)") ||
		!strings.Contains(string(out), ".Acquire(dlockWait, ") {
		t.Errorf("wait=250ms: the output does not wait 250ms:\n%s", out)
	}
	sem.wait, sem.waitSet = 0, false
	out, _ = emit(pkg, []*wrapper{sem}, "", "", nil, nil)
	if !strings.Contains(string(out), ".Acquire(ctx, ") || strings.Contains(string(out), "returns at once") {
		t.Errorf("no wait=: the output does not wait as long as ctx:\n%s", out)
	}
}
