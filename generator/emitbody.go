package generator

import (
	"strconv"
	"time"

	"github.com/dave/jennifer/jen"
)

// The body of a wrapper: the client, the key, and the call of the runtime
// its verb makes.

func zeroName(i int) string { return "dlockR" + strconv.Itoa(i) }

// returnErr returns the zero results and err.
func (e *emitter) returnErr(w *wrapper, err jen.Code) jen.Code {
	if e.inKeyHelper {
		return jen.Return(jen.Lit(""), err)
	}
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
	if w.ttl > 0 {
		opts = append(opts, jen.Qual(runtimePath, "WithTTL").Call(durationCode(w.ttl)))
	}
	switch w.verb {
	case verbFanout:
		if w.timeout > 0 {
			opts = append(opts, jen.Qual(runtimePath, "WithTimeout").Call(durationCode(w.timeout)))
		}
		return append(b, e.fanoutBody(w, opts)...)
	case verbOnce:
		acquire := jen.Id("dlockC").Dot("Once").Call(append([]jen.Code{jen.Id(w.ctxName), jen.Id("dlockKey")}, opts...)...)
		if w.wait > 0 {
			acquire = jen.Id("dlockC").Dot("Lock").Call(append([]jen.Code{jen.Id("dlockWait"), jen.Id("dlockKey")}, opts...)...)
		}
		return append(b, e.heldBody(w, acquire, "dlockL")...)
	default: // semaphore
		ctx, method := w.ctxName, "Acquire"
		switch {
		case w.wait > 0:
			ctx = "dlockWait"
		case w.waitSet: // wait=0: fail at once when no permit is free
			method = "TryAcquire"
		}
		acquire := jen.Id("dlockC").Dot("Semaphore").Call(jen.Id("dlockKey"), jen.Lit(w.limit)).
			Dot(method).Call(append([]jen.Code{jen.Id(ctx)}, opts...)...)
		return append(b, e.heldBody(w, acquire, "dlockP")...)
	}
}

// heldBody acquires (a lock or a permit), runs the function on a context
// that carries the lease and ends with it, and releases.
func (e *emitter) heldBody(w *wrapper, acquire jen.Code, v string) []jen.Code {
	var b []jen.Code
	if w.wait > 0 {
		b = append(b,
			jen.List(jen.Id("dlockWait"), jen.Id("dlockCancel")).Op(":=").Qual("context", "WithTimeout").Call(jen.Id(w.ctxName), durationCode(w.wait)),
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
