package generator

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"go/token"
	"go/types"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dave/jennifer/jen"
	"golang.org/x/tools/go/packages"
	"golang.org/x/tools/imports"
)

const (
	runtimePath = "github.com/dlock-go/dlock/runtime"
	genrtPath   = "github.com/dlock-go/dlock/runtime/genrt"
	msgpackPath = "github.com/vmihailenco/msgpack/v5"
)

// emitter writes one package's dlock_gen.go.
type emitter struct {
	pkg      *packages.Package
	f        *jen.File
	codecs   map[string]int  // type string -> codec index
	order    []types.Type    // codec types, by index
	names    []string        // codec names, by index
	slugs    map[string]bool // codec names taken
	imported map[string]bool // names the file's imports may take
	// codecSuffix ends the codec names of a constrained file's output
	codecSuffix string
	otherNames  map[string]token.Pos // package-level names of other build configurations
}

// importAs imports path under name, or under "dlock"+name when the package
// declares name itself (a package-level msgpack or slices).
func (e *emitter) importAs(path, name string) {
	if _, other := e.otherNames[name]; other || e.pkg.Types.Scope().Lookup(name) != nil {
		name = "dlock" + name
	}
	e.imported[name] = true
	if path == runtimePath || name != pathBase(path) {
		e.f.ImportAlias(path, name)
	} else {
		e.f.ImportName(path, name)
	}
}

func pathBase(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		path = path[i+1:]
	}
	return path
}

// reserve renames the parameters (and contexts) whose names the generated
// body cannot use: those of a package it refers to (time, strconv,
// context, msgpack, dlockrt, the packages of the wrapper's types).
func (e *emitter) reserve(ws []*wrapper) {
	taken := map[string]bool{}
	for name := range e.imported {
		taken[name] = true
	}
	seen := map[types.Type]bool{}
	for _, w := range ws {
		for _, p := range w.params {
			packageNames(p.typ, e.pkg.Types, taken, seen)
		}
		for _, r := range w.results {
			packageNames(r, e.pkg.Types, taken, seen)
		}
		taken[w.fn.Name()] = true // the body calls it
		if w.recv != nil {
			taken[w.recv.Obj().Name()] = true
		}
	}
	for _, w := range ws {
		if taken[w.ctxName] {
			w.ctxName = "dlockCtx"
		}
		for i := range w.params {
			if taken[w.params[i].id] {
				w.params[i].id = "dlockP" + strconv.Itoa(i+1)
			}
		}
	}
}

// packageNames adds the names the wrapper body uses to spell t: the
// packages it refers to, and its named types of the package here.
func packageNames(t types.Type, here *types.Package, out map[string]bool, seen map[types.Type]bool) {
	if seen[t] {
		return
	}
	seen[t] = true
	switch t := t.(type) {
	case *types.Named:
		if p := t.Obj().Pkg(); p == here {
			out[t.Obj().Name()] = true
		} else if p != nil {
			out[p.Name()] = true
		}
		if args := t.TypeArgs(); args != nil {
			for i := 0; i < args.Len(); i++ {
				packageNames(args.At(i), here, out, seen)
			}
		}
		packageNames(t.Underlying(), here, out, seen)
	case *types.Alias:
		packageNames(types.Unalias(t), here, out, seen)
	case *types.Pointer:
		packageNames(t.Elem(), here, out, seen)
	case *types.Slice:
		packageNames(t.Elem(), here, out, seen)
	case *types.Array:
		packageNames(t.Elem(), here, out, seen)
	case *types.Map:
		packageNames(t.Key(), here, out, seen)
		packageNames(t.Elem(), here, out, seen)
	case *types.Chan:
		packageNames(t.Elem(), here, out, seen)
	case *types.Struct:
		for i := 0; i < t.NumFields(); i++ {
			packageNames(t.Field(i).Type(), here, out, seen)
		}
	case *types.Signature:
		for i := 0; i < t.Params().Len(); i++ {
			packageNames(t.Params().At(i).Type(), here, out, seen)
		}
		for i := 0; i < t.Results().Len(); i++ {
			packageNames(t.Results().At(i).Type(), here, out, seen)
		}
	}
}

// emit renders one generated file: the wrappers ws (all of one source
// constraint), their codecs, and (in dlock_gen.go) the registration of
// the sentinel errors declared in unconstrained files (sources maps a
// source file to its output suffix).
func emit(pkg *packages.Package, ws []*wrapper, suffix, build string, sources map[string]string, otherNames map[string]token.Pos) ([]byte, error) {
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
	e := &emitter{pkg: pkg, f: f, codecs: map[string]int{}, imported: map[string]bool{}, slugs: map[string]bool{}, otherNames: otherNames}
	if suffix != "" { // codecs of its own: another file of the build may define the same types' codecs
		sum := sha256.Sum256([]byte(suffix))
		e.codecSuffix = "_" + hex.EncodeToString(sum[:4])
	}
	e.importAs(runtimePath, "dlockrt")
	e.importAs(genrtPath, "genrt")
	e.importAs(msgpackPath, "msgpack")
	for _, std := range []string{"context", "time", "strconv", "slices", "cmp"} {
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
		e.sentinels(sources)
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
	// Imports grouped as goimports groups them (the standard library
	// first), so that running goimports never makes -check report a
	// stale file.
	return imports.Process(FileName, buf.Bytes(), &imports.Options{Comments: true, TabIndent: true, TabWidth: 8, FormatOnly: true})
}

// sentinels registers the package's exported sentinel errors (package-level
// variables named Err... of an error type) under stable codes, so that
// errors.Is holds for them, wrapped or not, in every process.
func (e *emitter) sentinels(sources map[string]string) {
	var regs []jen.Code
	for _, v := range sentinelVars(e.pkg, sources) {
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

// sentinelVars are the package's exported sentinel errors (package-level
// variables named Err... of an error type) declared in unconstrained files,
// by name.
func sentinelVars(pkg *packages.Package, sources map[string]string) []*types.Var {
	errType := types.Universe.Lookup("error").Type().Underlying().(*types.Interface)
	scope := pkg.Types.Scope()
	var vs []*types.Var
	for _, name := range scope.Names() { // sorted
		v, ok := scope.Lookup(name).(*types.Var)
		if !ok || !v.Exported() || !strings.HasPrefix(name, "Err") || !types.Implements(v.Type(), errType) {
			continue
		}
		if out, ok := sources[fileOf(pkg, v.Pos())]; !ok || out != "" {
			continue // declared in a constrained file: dlock_gen.go is the same in every build
		}
		vs = append(vs, v)
	}
	return vs
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
	switch w.d.Verb {
	case "fanout":
		doc += " once across the fleet for all concurrent callers with the same key;\nevery caller gets the result."
	case "once":
		doc += " only while no one else in the fleet runs it for the same key;\notherwise it returns an error matching dlockrt.ErrNotAcquired."
	case "semaphore":
		doc += fmt.Sprintf(" while holding one of %s permits for its key.", w.d.Args["limit"].Value)
		if w.d.has("wait") && w.d.duration("wait") == 0 {
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

func zeroName(i int) string { return "dlockR" + strconv.Itoa(i) }

// returnErr returns the zero results and err.
func (e *emitter) returnErr(w *wrapper, err jen.Code) jen.Code {
	var vals []jen.Code
	for i := range w.results {
		vals = append(vals, jen.Id(zeroName(i)))
	}
	return jen.Return(append(vals, err)...)
}

func (e *emitter) ifErrReturn(w *wrapper) jen.Code {
	return jen.If(jen.Id("dlockErr").Op("!=").Nil()).Block(e.returnErr(w, jen.Id("dlockErr")))
}

// call is the call of the annotated function with ctx as its context.
func (e *emitter) call(w *wrapper, ctx string) *jen.Statement {
	args := []jen.Code{jen.Id(ctx)}
	for i, p := range w.params {
		if w.variadic && i == len(w.params)-1 {
			args = append(args, jen.Id(p.id).Op("..."))
		} else {
			args = append(args, jen.Id(p.id))
		}
	}
	if w.recv != nil {
		return jen.Id("dlockD").Dot(w.recv.Obj().Name()).Dot(w.fn.Name()).Call(args...)
	}
	return jen.Id(w.fn.Name()).Call(args...)
}

func (e *emitter) body(w *wrapper) []jen.Code {
	var b []jen.Code
	for i, r := range w.results {
		b = append(b, jen.Var().Id(zeroName(i)).Add(e.typ(r)))
	}
	if w.recv == nil {
		b = append(b,
			jen.List(jen.Id("dlockC"), jen.Id("dlockErr")).Op(":=").Qual(runtimePath, "Default").Call(),
			e.ifErrReturn(w))
	} else {
		b = append(b,
			jen.Id("dlockC").Op(":=").Id("dlockD").Dot("dlockClient"),
			jen.Var().Id("dlockErr").Error(),
			jen.If(jen.Id("dlockC").Op("==").Nil()).Block(
				jen.List(jen.Id("dlockC"), jen.Id("dlockErr")).Op("=").Qual(runtimePath, "Default").Call(),
				e.ifErrReturn(w)))
	}
	b = append(b, e.key(w)...)
	var opts []jen.Code
	if d := w.d.duration("ttl"); d > 0 {
		opts = append(opts, jen.Qual(runtimePath, "WithTTL").Call(durationCode(d)))
	}
	switch w.d.Verb {
	case "fanout":
		if d := w.d.duration("timeout"); d > 0 {
			opts = append(opts, jen.Qual(runtimePath, "WithTimeout").Call(durationCode(d)))
		}
		return append(b, e.fanoutBody(w, opts)...)
	case "once":
		acquire := jen.Id("dlockC").Dot("Once").Call(append([]jen.Code{jen.Id(w.ctxName), jen.Id("dlockKey")}, opts...)...)
		if d := w.d.duration("wait"); d > 0 {
			acquire = jen.Id("dlockC").Dot("Lock").Call(append([]jen.Code{jen.Id("dlockWait"), jen.Id("dlockKey")}, opts...)...)
		}
		return append(b, e.heldBody(w, acquire, "dlockL")...)
	default: // semaphore
		limit, _ := strconv.Atoi(w.d.Args["limit"].Value)
		ctx, method := w.ctxName, "Acquire"
		switch {
		case w.d.duration("wait") > 0:
			ctx = "dlockWait"
		case w.d.has("wait"): // wait=0: fail at once when no permit is free
			method = "TryAcquire"
		}
		acquire := jen.Id("dlockC").Dot("Semaphore").Call(jen.Id("dlockKey"), jen.Lit(limit)).
			Dot(method).Call(append([]jen.Code{jen.Id(ctx)}, opts...)...)
		return append(b, e.heldBody(w, acquire, "dlockP")...)
	}
}

// heldBody acquires (a lock or a permit), runs the function on a context
// that carries the lease and ends with it, and releases.
func (e *emitter) heldBody(w *wrapper, acquire jen.Code, v string) []jen.Code {
	var b []jen.Code
	if d := w.d.duration("wait"); d > 0 {
		b = append(b,
			jen.List(jen.Id("dlockWait"), jen.Id("dlockCancel")).Op(":=").Qual("context", "WithTimeout").Call(jen.Id(w.ctxName), durationCode(d)),
			jen.List(jen.Id(v), jen.Id("dlockErr")).Op(":=").Add(acquire),
			jen.Id("dlockCancel").Call())
	} else {
		b = append(b, jen.List(jen.Id(v), jen.Id("dlockErr")).Op(":=").Add(acquire))
	}
	return append(b,
		e.ifErrReturn(w),
		jen.Defer().Id(v).Dot("Release").Call(jen.Id(w.ctxName)),
		jen.List(jen.Id(w.ctxName), jen.Id("dlockDone")).Op(":=").Id(v).Dot("Context").Call(jen.Id(w.ctxName)),
		jen.Defer().Id("dlockDone").Call(),
		jen.Return(e.call(w, w.ctxName)),
	)
}

func (e *emitter) fanoutBody(w *wrapper, opts []jen.Code) []jen.Code {
	n := len(w.results)
	ctxParam := jen.Id(w.ctxName).Qual("context", "Context")
	switch n {
	case 0: // genrt.Fanout0 does the rest
		job := jen.Func().Params(ctxParam).Error().Block(jen.Return(e.call(w, w.ctxName)))
		return []jen.Code{jen.Return(jen.Qual(genrtPath, "Fanout0").Call(
			append([]jen.Code{jen.Id(w.ctxName), jen.Id("dlockC"), jen.Id("dlockKey"), job}, opts...)...))}
	case 1: // genrt.Fanout1 with the result's codecs
		r := w.results[0]
		job := jen.Func().Params(ctxParam).Params(e.typ(r), jen.Error()).Block(jen.Return(e.call(w, w.ctxName)))
		return []jen.Code{jen.Return(jen.Qual(genrtPath, "Fanout1").Call(
			append([]jen.Code{jen.Id(w.ctxName), jen.Id("dlockC"), jen.Id("dlockKey"), job, jen.Id(e.encName(r)), jen.Id(e.decName(r))}, opts...)...))}
	case 2: // genrt.Fanout2 with both results' codecs
		a, b := w.results[0], w.results[1]
		job := jen.Func().Params(ctxParam).Params(e.typ(a), e.typ(b), jen.Error()).Block(jen.Return(e.call(w, w.ctxName)))
		return []jen.Code{jen.Return(jen.Qual(genrtPath, "Fanout2").Call(
			append([]jen.Code{jen.Id(w.ctxName), jen.Id("dlockC"), jen.Id("dlockKey"), job,
				jen.Id(e.encName(a)), jen.Id(e.decName(a)), jen.Id(e.encName(b)), jen.Id(e.decName(b))}, opts...)...))}
	}
	var vals []jen.Code
	var encode []jen.Code
	var decode []jen.Code
	for i, r := range w.results {
		v := "dlockV" + strconv.Itoa(i)
		vals = append(vals, jen.Id(v))
		encode = append(encode, jen.If(jen.Err().Op(":=").Id(e.encName(r)).Call(jen.Id("dlockEnc"), jen.Id(v)), jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Err())))
		decode = append(decode, jen.If(jen.List(jen.Id(zeroName(i)), jen.Err()).Op("=").Id(e.decName(r)).Call(jen.Id("dlockDec")), jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Err())))
	}
	encode = append(encode, jen.Return(jen.Nil()))
	job := jen.Func().Params(jen.Id(w.ctxName).Qual("context", "Context")).Params(jen.Index().Byte(), jen.Error()).Block(
		jen.List(append(vals, jen.Id("dlockErr"))...).Op(":=").Add(e.call(w, w.ctxName)),
		jen.If(jen.Id("dlockErr").Op("!=").Nil()).Block(jen.Return(jen.Nil(), jen.Id("dlockErr"))),
		jen.Return(jen.Qual(genrtPath, "EncodeTuple").Call(jen.Lit(n),
			jen.Func().Params(jen.Id("dlockEnc").Op("*").Qual(msgpackPath, "Encoder")).Error().Block(encode...))),
	)
	decodeFn := jen.Func().Params(jen.Id("dlockDec").Op("*").Qual(msgpackPath, "Decoder")).Error().Block(
		append(append([]jen.Code{jen.Var().Err().Error()}, decode...), jen.Return(jen.Nil()))...)
	if n == 0 {
		decodeFn = jen.Func().Params(jen.Op("*").Qual(msgpackPath, "Decoder")).Error().Block(jen.Return(jen.Nil()))
	}
	var ret []jen.Code
	for i := range w.results {
		ret = append(ret, jen.Id(zeroName(i)))
	}
	return []jen.Code{
		jen.List(jen.Id("dlockB"), jen.Id("dlockErr")).Op(":=").Id("dlockC").Dot("Fanout").Call(
			append([]jen.Code{jen.Id(w.ctxName), jen.Id("dlockKey"), job}, opts...)...),
		e.ifErrReturn(w),
		jen.Id("dlockErr").Op("=").Qual(genrtPath, "DecodeTuple").Call(jen.Id("dlockB"), jen.Lit(n), decodeFn),
		jen.Return(append(ret, jen.Id("dlockErr"))...),
	}
}

// key emits dlockKey: the wrapper's space, then the template with every
// value escaped for the template's punctuation (so the key is injective),
// or a digest of the arguments.
func (e *emitter) key(w *wrapper) []jen.Code {
	if w.key != nil {
		var b []jen.Code
		seps := keySeparators(w.key)
		lit := w.space + ":"
		var expr *jen.Statement
		add := func(part jen.Code) {
			if expr == nil {
				expr = jen.Add(part)
			} else {
				expr = expr.Op("+").Add(part)
			}
		}
		for _, p := range w.key {
			if p.param == "" {
				lit += p.lit
				continue
			}
			if lit != "" {
				add(jen.Lit(lit))
				lit = ""
			}
			b = append(b, e.nilGuard(w, p)...)
			add(jen.Qual(genrtPath, "KeyValue").Call(e.keyHole(w, p), jen.Lit(seps)))
		}
		if lit != "" {
			add(jen.Lit(lit))
		}
		return append(b, jen.Id("dlockKey").Op(":=").Add(expr))
	}
	name := w.space
	var enc []jen.Code
	for _, p := range w.params {
		enc = append(enc, jen.If(jen.Err().Op(":=").Id(e.encName(p.typ)).Call(jen.Id("dlockEnc"), jen.Id(p.id)), jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Err())))
	}
	enc = append(enc, jen.Return(jen.Nil()))
	return []jen.Code{
		jen.List(jen.Id("dlockKey"), jen.Id("dlockErr")).Op(":=").Qual(genrtPath, "DigestKey").Call(
			jen.Lit(name), jen.Lit(len(w.params)),
			jen.Func().Params(jen.Id("dlockEnc").Op("*").Qual(msgpackPath, "Encoder")).Error().Block(enc...)),
		e.ifErrReturn(w),
	}
}

// holeBase is the expression and type a hole starts from: a parameter, or
// the receiver (the decorator's embedded pointer).
func (e *emitter) holeBase(w *wrapper, p keyPart) (*jen.Statement, types.Type, bool) {
	for _, q := range w.params {
		if q.name == p.param {
			return jen.Id(q.id), q.typ, false
		}
	}
	return jen.Id("dlockD").Dot(w.recv.Obj().Name()), types.NewPointer(w.recv), true
}

// nilGuard returns an error, instead of panicking, when a hole reads a
// field or method through a nil pointer or interface.
// Every pointer and interface on the way is guarded: the base, and each
// embedded field that a promoted field or method is reached through.
func (e *emitter) nilGuard(w *wrapper, p keyPart) []jen.Code {
	if p.field == "" {
		return nil
	}
	expr, typ, _ := e.holeBase(w, p)
	var guards []jen.Code
	guard := func(x *jen.Statement) {
		guards = append(guards, jen.If(x.Clone().Op("==").Nil()).Block(
			e.returnErr(w, jen.Qual(genrtPath, "NilKeyValue").Call(jen.Lit(holeText(p))))))
	}
	if panicsWhenNil(typ) {
		guard(expr)
	}
	_, index, _ := types.LookupFieldOrMethod(typ, true, e.pkg.Types, p.field)
	for _, i := range index[:max(len(index)-1, 0)] { // the embedded fields on the way
		st, ok := deref(typ).Underlying().(*types.Struct)
		if !ok {
			break
		}
		f := st.Field(i)
		expr = expr.Clone().Dot(f.Name())
		typ = f.Type()
		if panicsWhenNil(typ) {
			guard(expr)
		}
	}
	return guards
}

// panicsWhenNil reports whether a hole reading through a value of type t
// panics when it is nil: a pointer, or an interface (its method).
func panicsWhenNil(t types.Type) bool {
	switch t.Underlying().(type) {
	case *types.Pointer, *types.Interface:
		return true
	}
	return false
}

func deref(t types.Type) types.Type {
	if p, ok := t.Underlying().(*types.Pointer); ok {
		return p.Elem()
	}
	return t
}

// keyHole renders one {param}, {param.Field} or {recv.Method} as a string
// expression.
func (e *emitter) keyHole(w *wrapper, p keyPart) jen.Code {
	expr, typ, _ := e.holeBase(w, p)
	if p.field != "" {
		expr = expr.Dot(p.field)
		obj, _, _ := types.LookupFieldOrMethod(typ, true, e.pkg.Types, p.field)
		typ = obj.Type()
		if fn, ok := obj.(*types.Func); ok {
			expr = expr.Call()
			typ = fn.Type().(*types.Signature).Results().At(0).Type()
		}
	}
	b := typ.Underlying().(*types.Basic)
	switch {
	case b.Info()&types.IsString != 0:
		if types.Identical(typ, types.Typ[types.String]) {
			return expr
		}
		return jen.String().Call(expr)
	case b.Info()&types.IsBoolean != 0:
		return jen.Qual("strconv", "FormatBool").Call(jen.Bool().Call(expr))
	case b.Info()&types.IsUnsigned != 0:
		return jen.Qual("strconv", "FormatUint").Call(jen.Uint64().Call(expr), jen.Lit(10))
	default:
		return jen.Qual("strconv", "FormatInt").Call(jen.Int64().Call(expr), jen.Lit(10))
	}
}

// durationCode renders d as a constant expression (10 * time.Second).
func durationCode(d time.Duration) jen.Code {
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{time.Hour, "Hour"}, {time.Minute, "Minute"}, {time.Second, "Second"}, {time.Millisecond, "Millisecond"}, {time.Microsecond, "Microsecond"}} {
		if d%u.d == 0 {
			return jen.Lit(int(d/u.d)).Op("*").Qual("time", u.name)
		}
	}
	return jen.Qual("time", "Duration").Call(jen.Lit(int64(d)))
}

// typ renders a type, importing the packages it names.
func (e *emitter) typ(t types.Type) jen.Code {
	switch t := t.(type) {
	case *types.Alias:
		return e.qual(t.Obj(), t.TypeArgs())
	case *types.Named:
		return e.qual(t.Obj(), t.TypeArgs())
	case *types.Basic:
		if t.Kind() == types.UnsafePointer {
			return jen.Qual("unsafe", "Pointer")
		}
		return jen.Id(t.Name())
	case *types.Pointer:
		return jen.Op("*").Add(e.typ(t.Elem()))
	case *types.Slice:
		return jen.Index().Add(e.typ(t.Elem()))
	case *types.Array:
		return jen.Index(jen.Lit(int(t.Len()))).Add(e.typ(t.Elem()))
	case *types.Map:
		return jen.Map(e.typ(t.Key())).Add(e.typ(t.Elem()))
	case *types.Chan:
		switch t.Dir() {
		case types.SendOnly:
			return jen.Chan().Op("<-").Add(e.typ(t.Elem()))
		case types.RecvOnly:
			return jen.Op("<-").Chan().Add(e.typ(t.Elem()))
		}
		if in, ok := t.Elem().(*types.Chan); ok && in.Dir() == types.RecvOnly {
			// chan <-chan T would read as chan<- chan T.
			return jen.Chan().Parens(e.typ(in))
		}
		return jen.Chan().Add(e.typ(t.Elem()))
	case *types.Signature:
		var ps, rs []jen.Code
		for i := 0; i < t.Params().Len(); i++ {
			pt := t.Params().At(i).Type()
			if t.Variadic() && i == t.Params().Len()-1 {
				ps = append(ps, jen.Op("...").Add(e.typ(pt.(*types.Slice).Elem())))
			} else {
				ps = append(ps, e.typ(pt))
			}
		}
		for i := 0; i < t.Results().Len(); i++ {
			rs = append(rs, e.typ(t.Results().At(i).Type()))
		}
		return jen.Func().Params(ps...).Params(rs...)
	case *types.Interface:
		if t.Empty() {
			return jen.Any()
		}
		var ms []jen.Code
		for i := 0; i < t.NumEmbeddeds(); i++ {
			ms = append(ms, e.typ(t.EmbeddedType(i)))
		}
		for i := 0; i < t.NumExplicitMethods(); i++ {
			m := t.ExplicitMethod(i)
			sig := e.typ(m.Type()).(*jen.Statement)
			ms = append(ms, jen.Id(m.Name()).Add(signatureTail(sig)))
		}
		return jen.Interface(ms...)
	case *types.Struct:
		var fs []jen.Code
		for i := 0; i < t.NumFields(); i++ {
			f := t.Field(i)
			var fc *jen.Statement
			if f.Embedded() {
				fc = jen.Add(e.typ(f.Type()))
			} else {
				fc = jen.Id(f.Name()).Add(e.typ(f.Type()))
			}
			if tag := t.Tag(i); tag != "" {
				fc = fc.Op(strconv.Quote(tag))
			}
			fs = append(fs, fc)
		}
		return jen.Struct(fs...)
	case *types.TypeParam:
		return jen.Id(t.Obj().Name())
	}
	return jen.Id(types.TypeString(t, nil))
}

// signatureTail drops the leading "func" of a rendered signature, for an
// interface method.
func signatureTail(sig *jen.Statement) jen.Code {
	s := *sig
	return jen.Add(s[1:]...)
}

func (e *emitter) qual(obj *types.TypeName, args *types.TypeList) jen.Code {
	var s *jen.Statement
	switch {
	case obj.Pkg() == nil:
		s = jen.Id(obj.Name())
	case obj.Pkg().Path() == e.pkg.PkgPath:
		s = jen.Id(obj.Name())
	default:
		e.importAs(obj.Pkg().Path(), obj.Pkg().Name())
		s = jen.Qual(obj.Pkg().Path(), obj.Name())
	}
	if args != nil && args.Len() > 0 {
		var ts []jen.Code
		for i := 0; i < args.Len(); i++ {
			ts = append(ts, e.typ(args.At(i)))
		}
		s = s.Types(ts...)
	}
	return s
}
