package history

import (
	"slices"
	"sort"

	"github.com/anishathalye/porcupine"
)

// The history as porcupine operations, one model per promise: beliefs of
// holders, tokens, fanout outcomes and resets.

// relax excuses the documented windows, for the relaxed check, each as
// narrowly as its fault allows. A Pause of a holder's process excuses the
// leases it believed before it resumed, from the pause on until grace after
// it: a lease that lapsed meanwhile is noticed at once on resuming. A Reset
// excuses the leases believed during it or asked for in it, until one lease
// and grace after it: a holder whose key the server lost learns it at its
// next renewal. A belief that outlasts its excuse is checked again.
func (h *history) relax(grace int64) {
	for _, ls := range h.holds {
		for _, l := range ls {
			for _, w := range h.windows {
				switch {
				case w.effect == Pause && w.target == l.proc && l.acqRet < w.t1 && l.endCall > w.t0:
					l.cuts = append(l.cuts, cut{max(l.acqRet, w.t0), w.t1 + grace, w.name})
				case w.effect == Reset && l.acqCall <= w.t1 && l.endCall >= w.t0:
					l.cuts = append(l.cuts, cut{max(l.acqRet, w.t0), w.t1 + l.ttl + grace, w.name})
				}
			}
			sort.Slice(l.cuts, func(i, j int) bool { return l.cuts[i].t0 < l.cuts[j].t0 })
			merged := l.cuts[:0]
			for _, c := range l.cuts {
				if n := len(merged); n > 0 && c.t0 <= merged[n-1].t1 {
					merged[n-1].t1 = max(merged[n-1].t1, c.t1)
					continue
				}
				merged = append(merged, c)
			}
			l.cuts = merged
		}
	}
}

// beliefs are the checked parts of the holds of kind: strict, each hold's
// whole belief; relaxed, with the excused parts cut out.
func (h *history) beliefs(kind string, relaxed bool) []belief {
	var bs []belief
	for _, l := range h.holds[kind] {
		end := max(l.endRet, l.endCall)
		if !relaxed {
			bs = append(bs, belief{h: l, a: l.acqRet, b: l.endCall, aRet: end, grant: true})
			continue
		}
		a, grant := l.acqRet, true
		for _, c := range l.cuts {
			if c.t0 >= l.endCall {
				break
			}
			if c.t0 > a {
				bs = append(bs, belief{h: l, a: a, b: c.t0, aRet: c.t0, grant: grant})
			}
			a, grant = max(a, c.t1), false
		}
		if a < l.endCall {
			bs = append(bs, belief{h: l, a: a, b: l.endCall, aRet: end, grant: grant})
		}
	}
	return bs
}

// resetOps are the Reset windows as model operations (for fanout).
func (h *history) resetOps() []porcupine.Operation {
	var ops []porcupine.Operation
	for _, w := range h.windows {
		if w.effect == Reset {
			ops = append(ops, porcupine.Operation{ClientId: len(h.procs), Input: input{op: w.effect, proc: w.name, until: w.t1},
				Call: w.t0, Return: w.t1})
		}
	}
	return ops
}

// holdOps are the believed holds: an Acquire at the moment the caller got
// its lease (or an excuse ended), a Release from when the holder stopped
// believing (or an excuse began).
func (h *history) holdOps(kind string) (strict, relaxed []porcupine.Operation) {
	ops := func(bs []belief) []porcupine.Operation {
		var out []porcupine.Operation
		for i, b := range bs {
			c := h.procs[b.h.proc]
			lease := i + 1 // one lease of the model per checked part
			acq := porcupine.Operation{ClientId: c, Input: input{op: Acquire, proc: b.h.proc, lease: lease, token: b.h.token,
				limit: max(b.h.limit, 1), resumed: !b.grant}, Call: b.a, Return: b.a, Metadata: b.h.key}
			rel := porcupine.Operation{ClientId: c, Input: input{op: Release, proc: b.h.proc, lease: lease},
				Call: b.b, Return: max(b.aRet, b.b), Metadata: b.h.key}
			out = append(out, acq, rel)
		}
		return out
	}
	return ops(h.beliefs(kind, false)), ops(h.beliefs(kind, true))
}

// tokenOps are the lock grants, each during its acquire's call, with the
// ClockBack windows for the relaxed check.
func (h *history) tokenOps() (strict, relaxed []porcupine.Operation) {
	for _, l := range h.holds[Lock] {
		strict = append(strict, porcupine.Operation{ClientId: h.procs[l.proc], Input: input{op: Acquire, proc: l.proc, lease: l.n, token: l.token, call: l.acqCall},
			Call: l.acqCall, Return: l.acqRet, Metadata: l.key})
	}
	relaxed = slices.Clone(strict)
	for _, w := range h.windows {
		if w.effect == ClockBack {
			relaxed = append(relaxed, porcupine.Operation{ClientId: len(h.procs), Input: input{op: w.effect, proc: w.name, until: w.t1},
				Call: w.t0, Return: w.t1})
		}
	}
	return strict, relaxed
}

// fanoutOps: a run may publish from its job's return until the next job of
// its key started (a later generation leads then, and an earlier one can
// no longer publish), or never; a run whose job returned after that
// published nothing. The relaxed check leaves out callers that called
// during a Reset window.
func (h *history) fanoutOps() (strict, relaxed []porcupine.Operation) {
	var runs, calls []porcupine.Operation
	for _, r := range h.runs {
		until := h.publishUntil(r)
		if r.call.T > until {
			continue
		}
		runs = append(runs, porcupine.Operation{ClientId: h.procs[r.call.Proc],
			Input: input{op: Run, proc: r.call.Proc, value: r.call.Value}, Call: r.call.T, Return: until, Metadata: r.call.Key})
	}
	for _, c := range h.calls {
		op := porcupine.Operation{ClientId: h.procs[c.call.Proc],
			Input: input{op: Call, proc: c.call.Proc, value: c.ret.Value}, Call: c.call.T, Return: c.ret.T, Metadata: c.call.Key}
		strict = append(strict, op)
		if h.windowMeets(c.call.T, c.call.T, Reset) == "" {
			calls = append(calls, op)
		}
	}
	return append(strict, runs...), append(append(calls, runs...), h.resetOps()...)
}

// publishUntil is the latest moment run r may have published: when the
// next job of its key started (a later generation led then), or never.
func (h *history) publishUntil(r span) int64 {
	leads := h.leads[r.call.Key]
	if i, _ := slices.BinarySearch(leads, r.call.Since+1); i < len(leads) {
		return leads[i]
	}
	return never
}

// byKey partitions a history by key (the promises are per key); a fault
// window's operation (no key) joins every partition whose operations it
// meets in time.
func byKey(ops []porcupine.Operation) (keys []string, parts [][]porcupine.Operation) {
	var faults []porcupine.Operation
	m := map[string][]porcupine.Operation{}
	for _, o := range ops {
		k, ok := o.Metadata.(string)
		if !ok {
			faults = append(faults, o)
			continue
		}
		if _, seen := m[k]; !seen {
			keys = append(keys, k)
		}
		m[k] = append(m[k], o)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p := m[k]
		first, last := int64(never), int64(0)
		for _, o := range p {
			first = min(first, o.Call)
			if o.Return != never {
				last = max(last, o.Return)
			} else {
				last = max(last, o.Call)
			}
		}
		for _, f := range faults {
			if f.Call <= last && first <= f.Return {
				p = append(p, f)
			}
		}
		parts = append(parts, p)
	}
	return keys, parts
}
