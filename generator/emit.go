package generator

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"go/token"
	"go/types"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/dave/jennifer/jen"
	"golang.org/x/tools/go/packages"
)

const (
	runtimePath = "github.com/dlock-go/dlock/runtime"
	genrtPath   = "github.com/dlock-go/dlock/runtime/genrt"
	msgpackPath = "github.com/vmihailenco/msgpack/v5"
)

// emitter writes one package's dlock_gen.go.
type emitter struct {
	pkg         *packages.Package
	f           *jen.File
	codecs      map[string]int    // type string -> codec index
	order       []types.Type      // codec types, by index
	names       []string          // codec names, by index
	slugs       map[string]bool   // codec names taken
	wire        wireTypes         // how each type it sends crosses the wire
	inKeyHelper bool              // returnErr returns "" and the error
	imported    map[string]bool   // names the file's imports took
	importNames map[string]string // import path -> its name in the file
	// codecSuffix ends the codec names of a constrained file's output
	codecSuffix string
	otherNames  map[string]token.Pos // package-level names of other build configurations and of the wrappers
}

// emit renders one generated file: the wrappers ws (all of one source
// constraint), their codecs, and (in dlock_gen.go) the registration of
// the package's sentinel errors.
func emit(pkg *packages.Package, ws []*wrapper, suffix, build string, sentinels []*types.Var, otherNames map[string]token.Pos) ([]byte, error) {
	sort.SliceStable(ws, func(i, j int) bool {
		a, b := ws[i].pos, ws[j].pos
		if a.Filename != b.Filename {
			return a.Filename < b.Filename
		}
		return a.Offset < b.Offset
	})
	f := jen.NewFilePathName(pkg.PkgPath, pkg.Name)
	f.HeaderComment(Header)
	if build != "" {
		f.HeaderComment(build)
	}
	e := &emitter{pkg: pkg, f: f, codecs: map[string]int{}, imported: map[string]bool{}, importNames: map[string]string{}, slugs: map[string]bool{}, otherNames: otherNames}
	if suffix != "" { // codecs of its own: another file of the build may define the same types' codecs
		sum := sha256.Sum256([]byte(suffix))
		e.codecSuffix = "_" + hex.EncodeToString(sum[:4])
	}
	e.importAs(runtimePath, "dlockrt")
	e.importAs(genrtPath, "genrt")
	e.importAs(msgpackPath, "msgpack")
	for _, std := range []string{"context", "time", "strconv", "slices", "cmp", "reflect", "unsafe"} {
		e.importAs(std, std)
	}
	e.reserve(ws)
	decorated := map[*types.Named]bool{}
	for _, w := range ws {
		if w.recv != nil && !decorated[w.recv] {
			decorated[w.recv] = true
			e.decorator(w.recv)
		}
		e.wrapper(w)
	}
	if suffix == "" {
		e.sentinels(sentinels)
	}
	// Codecs may add codecs of their elements; all are emitted once known,
	// in the order of their names (stable as wrappers come and go).
	codecs := jen.NewFile(pkg.Name) // scratch: rendering discovers element codecs
	for i := 0; i < len(e.order); i++ {
		e.f, codecs = codecs, e.f
		e.codec(i, e.order[i])
		e.f, codecs = codecs, e.f
	}
	byName := make([]int, len(e.order))
	for i := range byName {
		byName[i] = i
	}
	sort.Slice(byName, func(a, b int) bool { return e.names[byName[a]] < e.names[byName[b]] })
	for _, i := range byName {
		e.codec(i, e.order[i])
	}
	var buf bytes.Buffer
	if err := f.Render(&buf); err != nil {
		return nil, err
	}
	return groupImports(buf.Bytes()), nil
}

// groupImports splits the import block jen renders (gofmt'd, sorted by
// path) into the standard library's imports, a blank line, then the
// others, as goimports groups them: running goimports never makes -check
// report a stale file. (imports.Process did this by parsing and printing
// the file again, a third of dlockgen's time.)
func groupImports(src []byte) []byte {
	start := bytes.Index(src, []byte("\nimport (\n"))
	if start < 0 {
		return src
	}
	start += len("\nimport (\n")
	end := bytes.Index(src[start:], []byte("\n)\n"))
	if end < 0 {
		return src
	}
	end += start
	var std, other [][]byte
	for _, line := range bytes.Split(src[start:end], []byte("\n")) {
		path := line[bytes.IndexByte(line, '"')+1:]
		if first, _, _ := bytes.Cut(path, []byte("/")); bytes.ContainsRune(first, '.') {
			other = append(other, line)
		} else {
			std = append(std, line)
		}
	}
	block := bytes.Join(std, []byte("\n"))
	if len(std) > 0 && len(other) > 0 {
		block = append(block, '\n', '\n')
	}
	block = append(block, bytes.Join(other, []byte("\n"))...)
	return slices.Concat(src[:start], block, src[end:])
}

// sentinels registers the package's exported sentinel errors (package-level
// variables named Err... of an error type) under stable codes, so that
// errors.Is holds for them, wrapped or not, in every process.
func (e *emitter) sentinels(vs []*types.Var) {
	var regs []jen.Code
	for _, v := range vs {
		reg := jen.Qual(runtimePath, "RegisterError").Call(jen.Lit(e.pkg.PkgPath+"."+v.Name()), jen.Id(v.Name()))
		if nilable(v.Type()) {
			reg = jen.If(jen.Id(v.Name()).Op("!=").Nil()).Block(reg)
		}
		regs = append(regs, reg)
	}
	if len(regs) == 0 {
		return
	}
	e.comment("The package's sentinel errors cross the wire: errors.Is holds for them\nin every process, wrapped or not.")
	e.f.Func().Id("init").Params().Block(regs...)
}

// nilable reports whether a value of t can be nil.
func nilable(t types.Type) bool {
	switch t.Underlying().(type) {
	case *types.Pointer, *types.Interface, *types.Map, *types.Slice, *types.Signature, *types.Chan:
		return true
	}
	return false
}

// comment emits a doc comment as // lines.
func (e *emitter) comment(text string) {
	for _, line := range strings.Split(text, "\n") {
		e.f.Comment(line)
	}
}

// decorator emits <T>WithDlock and its constructor.
func (e *emitter) decorator(t *types.Named) {
	name := t.Obj().Name()
	dec := name + "WithDlock"
	e.comment(fmt.Sprintf("%s is *%s with the methods annotated with //dlock: directives run\n"+
		"through dlock. It embeds *%s, so it keeps every other method and satisfies\n"+
		"the interfaces *%s satisfies.", dec, name, name, name))
	e.f.Type().Id(dec).Struct(
		jen.Op("*").Id(name),
		jen.Id("dlockClient").Op("*").Qual(runtimePath, "Client"),
	)
	e.f.Commentf("New%s decorates base. With a nil c, each call uses dlockrt.Default().", dec)
	e.f.Func().Id("New"+dec).Params(jen.Id("base").Op("*").Id(name), jen.Id("c").Op("*").Qual(runtimePath, "Client")).
		Op("*").Id(dec).Block(
		jen.Return(jen.Op("&").Id(dec).Values(jen.Dict{jen.Id(name): jen.Id("base"), jen.Id("dlockClient"): jen.Id("c")})),
	)
}

// wrapper emits one wrapper and its stale guard.
func (e *emitter) wrapper(w *wrapper) {
	impl := w.fn.Name()
	var doc string
	if w.recv != nil {
		doc = fmt.Sprintf("%s runs (*%s).%s", w.name, w.recv.Obj().Name(), impl)
	} else {
		doc = fmt.Sprintf("%s runs %s", w.name, impl)
	}
	switch w.verb {
	case verbFanout:
		doc += " once across the fleet for all concurrent callers with the same key;\nevery caller gets the result."
	case verbOnce:
		doc += " only while no one else in the fleet runs it for the same key;\notherwise it returns an error matching dlockrt.ErrNotAcquired."
	case verbSemaphore:
		doc += fmt.Sprintf(" while holding one of %d permits for its key.", w.limit)
		if w.waitSet && w.wait == 0 {
			doc += "\nWhen none is free it returns at once an error matching dlockrt.ErrNotAcquired."
		}
	}
	doc += fmt.Sprintf("\n\nGenerated by dlockgen from %s on %s in %s (key space %s); if it stops compiling, re-run go generate.",
		w.text, impl, filepath.Base(w.pos.Filename), w.named)
	e.comment(doc)

	params := []jen.Code{jen.Id(w.ctxName).Qual("context", "Context")}
	for i, p := range w.params {
		if w.variadic && i == len(w.params)-1 {
			params = append(params, jen.Id(p.id).Op("...").Add(e.typ(p.typ.(*types.Slice).Elem())))
		} else {
			params = append(params, jen.Id(p.id).Add(e.typ(p.typ)))
		}
	}
	var results []jen.Code
	for _, r := range w.results {
		results = append(results, e.typ(r))
	}
	results = append(results, jen.Error())

	fn := e.f.Func()
	if w.recv != nil {
		fn = fn.Params(jen.Id("dlockD").Op("*").Id(w.recv.Obj().Name() + "WithDlock"))
	}
	fn.Id(w.name).Params(params...).Params(results...).Block(e.body(w)...)

	// The stale guard: fails to compile when the annotated signature changed.
	guard := jen.Func().Params(append([]jen.Code{jen.Qual("context", "Context")}, e.paramTypes(w)...)...).Params(results...)
	target := jen.Id(impl)
	if w.recv != nil {
		guard = jen.Func().Params(append([]jen.Code{jen.Op("*").Id(w.recv.Obj().Name()), jen.Qual("context", "Context")}, e.paramTypes(w)...)...).Params(results...)
		target = jen.Parens(jen.Op("*").Id(w.recv.Obj().Name())).Dot(impl)
	}
	e.f.Var().Id("_").Add(guard).Op("=").Add(target)
	e.keyHelper(w, params[1:])
}

// keyHelper emits <Name>Key, which returns the key the wrapper uses for
// its arguments: what an operator passes to dlock inspect.
func (e *emitter) keyHelper(w *wrapper, params []jen.Code) {
	name := w.name + "Key"
	e.comment(fmt.Sprintf("%s returns the key %s uses for these arguments, as Client.Inspect and\nthe dlock command (dlock inspect KEY) take it.", name, w.name))
	fn := e.f.Func()
	if w.recv != nil {
		fn = fn.Params(jen.Id("dlockD").Op("*").Id(w.recv.Obj().Name() + "WithDlock"))
	}
	e.inKeyHelper = true
	body := append(e.key(w), jen.Return(jen.Id("dlockKey"), jen.Nil()))
	e.inKeyHelper = false
	fn.Id(name).Params(params...).Params(jen.String(), jen.Error()).Block(body...)
}

func (e *emitter) paramTypes(w *wrapper) []jen.Code {
	var out []jen.Code
	for i, p := range w.params {
		if w.variadic && i == len(w.params)-1 {
			out = append(out, jen.Op("...").Add(e.typ(p.typ.(*types.Slice).Elem())))
		} else {
			out = append(out, e.typ(p.typ))
		}
	}
	return out
}
