package history

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// never is the return time of an operation whose effect may come at any
// later moment, or never (an unacknowledged release, a published run).
const never = math.MaxInt64

// Options tunes Check.
type Options struct {
	// Timeout bounds each porcupine check. Default 60s.
	Timeout time.Duration
	// MaxOps is the largest partition (one key's operations) given to
	// porcupine, whose memory grows with its square; a larger one is
	// checked by the direct sweep alone (exact for locks and semaphores).
	// Default 30000.
	MaxOps int
	// HTMLDir is where a failing check writes porcupine's visualization of
	// the offending key's history. Default os.TempDir().
	HTMLDir string
	// Name prefixes the visualization's file name.
	Name string
	// Grace is how long a process may take to act on a lost lease after it
	// resumed from a pause, or after a Reset's window and one lease.
	// Default 500ms.
	Grace time.Duration
	// Settle is how long after a fault's window operations may still fail
	// for other reasons than contention (reconnecting, re-resolving a
	// primary). Default 1s.
	Settle time.Duration
}

// A Row of the report: one fault (or "no fault": operations outside every
// window) and one promise.
type Row struct {
	Fault, Promise string
	Ops            int    // operations during the fault's windows
	In, Out        int    // violations inside the documented windows, and outside them
	Verdict        string // porcupine's, on the promise's whole history
}

// A Report is what Check found.
type Report struct {
	Rows []Row
	// Failures describes each violation outside the documented windows,
	// naming the visualization written for it; empty when the history
	// keeps every promise.
	Failures []string
}

// Markdown renders the report as a table, naming the setup (standalone,
// Sentinel, Cluster) in its first column.
func (r *Report) Markdown(setup string) string {
	var b strings.Builder
	b.WriteString("| setup | fault | promise | operations | violations in documented windows | violations outside | checker (whole history) |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, row := range r.Rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %d | %d | %s |\n", setup, row.Fault, row.Promise, row.Ops, row.In, row.Out, row.Verdict)
	}
	return b.String()
}

// span is one recorded operation: its call and, if seen, its return.
type span struct {
	call Event
	ret  *Event
}

func (s span) end() int64 {
	if s.ret == nil {
		return never
	}
	return s.ret.T
}

type window struct {
	name, effect, target string
	recorder             string // the process that recorded it (the driver, or the one it hit)
	t0, t1               int64
	delay                int64 // Late: how long each reply was held (ns)
}

// hits reports whether the window's fault bears on proc's operations: one
// without a target hits every process; one with a target (the process it
// was injected in, or by) hits that one.
func (w window) hits(proc string) bool { return w.target == "" || w.target == proc }

// hold is one lease of a lock or semaphore: believed from its acquire's
// return until its end's call (release, loss, or its process's death).
type hold struct {
	n               int // lease number, for the models
	proc, key       string
	limit           int
	token           int64
	ttl             int64 // the lease asked for (ns); 0 when not recorded
	acqCall, acqRet int64
	endCall, endRet int64
	lost            bool  // its holder saw Done closed
	cuts            []cut // the parts of its belief the windows excuse, sorted, disjoint
}

// cut is a part of a hold's belief a window excuses: the lease may have
// lapsed (or been lost by the server) then, and its holder not yet know.
type cut struct {
	t0, t1 int64
	window string
}

// belief is a part of a hold's belief that is checked: from a (its grant,
// or the end of an excused part) to b (its end, or the start of one).
type belief struct {
	h     *hold
	a, b  int64
	aRet  int64 // the linearization bound of its end: endRet at the hold's real end, else b
	grant bool  // a is the hold's grant (not the end of an excused part)
}

type history struct {
	windows []window
	holds   map[string][]*hold // by kind
	leads   map[string][]int64 // fanout: when each job of a key started, sorted
	runs    []span             // fanout runs
	calls   []span             // fanout callers with an outcome
	failed  []span             // operations that returned an error
	procs   map[string]int     // client IDs for the visualization
}

// Check reads every *.jsonl history file in dir and checks the promises.
func Check(dir string, o Options) (*Report, error) {
	if o.Timeout == 0 {
		o.Timeout = time.Minute
	}
	if o.MaxOps == 0 {
		o.MaxOps = 30000
	}
	if o.HTMLDir == "" {
		o.HTMLDir = os.TempDir()
	}
	if o.Grace == 0 {
		o.Grace = 500 * time.Millisecond
	}
	if o.Settle == 0 {
		o.Settle = time.Second
	}
	h, err := load(dir)
	if err != nil {
		return nil, err
	}
	h.relax(o.Grace.Nanoseconds())
	r := &Report{}
	for _, p := range []struct{ kind, promise string }{
		{Lock, "lock: one believed holder, growing tokens"},
		{Semaphore, "semaphore: at most limit believed holders"},
		{Fanout, "fanout: each caller gets a published outcome of its key"},
	} {
		var ops [][2]int64 // every operation's interval, for the rows
		var viol []violation
		var checks []modelCheck
		switch p.kind {
		case Fanout:
			ops, viol = h.fanoutFacts()
			strict, relaxed := h.fanoutOps()
			checks = []modelCheck{{"", fanoutModel, strict, relaxed}}
		case Lock:
			ops, viol = h.holdFacts(p.kind)
			strict, relaxed := h.holdOps(p.kind)
			tokens, clock := h.tokenOps()
			checks = []modelCheck{{"holders", holdModel, strict, relaxed}, {"tokens", tokenModel, tokens, clock}}
		default:
			ops, viol = h.holdFacts(p.kind)
			strict, relaxed := h.holdOps(p.kind)
			checks = []modelCheck{{"", holdModel, strict, relaxed}}
		}
		if len(ops) == 0 {
			continue
		}
		verdict, failures := h.verdict(checks, o, p.kind)
		r.Failures = append(r.Failures, failures...)
		for _, v := range viol {
			if v.window == "" {
				r.Failures = append(r.Failures, p.kind+": "+v.what)
			}
		}
		r.Rows = append(r.Rows, h.rows(p.promise, ops, viol, verdict)...)
	}
	ops, viol := h.livenessFacts(o.Settle.Nanoseconds())
	verdict := "every operation succeeded outside the windows"
	for _, v := range viol {
		if v.window == "" {
			r.Failures = append(r.Failures, "liveness: "+v.what)
			verdict = "FAILURES OUTSIDE THE WINDOWS"
		}
	}
	r.Rows = append(r.Rows, h.rows("liveness: nothing fails but for contention, nor is a lease lost", ops, viol, verdict)...)
	return r, nil
}

func load(dir string) (*history, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		return nil, err
	}
	type id struct {
		proc string
		id   int64
	}
	spans := map[id]*span{}
	var order []id
	last := map[string]int64{} // each process's last event
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		var torn []byte
		for sc.Scan() {
			if torn != nil {
				return nil, fmt.Errorf("%s: malformed line %q", name, torn)
			}
			var e Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				// A process killed mid-write leaves at most a torn last line.
				torn = slices.Clone(sc.Bytes())
				continue
			}
			k := id{e.Proc, e.ID}
			last[e.Proc] = max(last[e.Proc], e.T)
			if !e.Ret {
				if spans[k] != nil {
					return nil, fmt.Errorf("%s: operation %d of %s recorded twice (two processes with one name?)", name, e.ID, e.Proc)
				}
				spans[k] = &span{call: e}
				order = append(order, k)
			} else if s := spans[k]; s != nil {
				s.ret = &e
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	h := &history{holds: map[string][]*hold{}, leads: map[string][]int64{}, procs: map[string]int{}}
	leases := map[id]*hold{}
	for _, k := range order {
		s := spans[k]
		e := s.call
		if _, ok := h.procs[e.Proc]; !ok {
			h.procs[e.Proc] = len(h.procs)
		}
		switch {
		case e.Kind == Fault:
			// A window its recorder never closed (it was killed) ends
			// with the recorder's last event.
			h.windows = append(h.windows, window{e.Op, e.Effect, e.Target, e.Proc, e.T, min(s.end(), last[e.Proc]),
				e.Delay * int64(time.Millisecond)})
		case e.Kind == Fanout && e.Op == Lead:
			h.leads[e.Key] = append(h.leads[e.Key], e.Since)
		case e.Kind == Fanout && e.Op == Run:
			h.runs = append(h.runs, *s)
		case e.Kind == Fanout && e.Op == Call:
			if s.ret != nil && s.ret.Err == "" {
				h.calls = append(h.calls, *s)
			} else if s.ret != nil {
				h.failed = append(h.failed, *s)
			}
		case e.Op == Acquire:
			// A failed or unanswered acquire never made a believed holder
			// (an ambiguous one that took the key anyway is undone, and
			// meanwhile holds it for nobody): it constrains nothing.
			if s.ret != nil && s.ret.Err != "" {
				h.failed = append(h.failed, *s)
			}
			if s.ret == nil || s.ret.Err != "" {
				continue
			}
			l := &hold{n: len(leases) + 1, proc: e.Proc, key: e.Key, limit: e.Limit, token: s.ret.Token,
				ttl: e.TTL * int64(time.Millisecond), acqCall: e.T, acqRet: s.ret.T, endCall: -1}
			leases[k] = l
			h.holds[e.Kind] = append(h.holds[e.Kind], l)
		case e.Op == Release || e.Op == Lost:
			l := leases[id{e.Proc, e.Lease}]
			if l == nil || l.endCall >= 0 {
				continue
			}
			l.endCall, l.endRet = e.T, s.end()
			if e.Op == Lost {
				l.endRet, l.lost = e.T, true
			} else if s.ret != nil && s.ret.Err != "" {
				l.endRet = never // unacknowledged: the key lapses some time later
			}
		}
	}
	for _, l := range h.leads {
		slices.Sort(l)
	}
	// A holder whose process was killed stops believing at its death; one
	// with no end at all (the run stopped under it) may end any time.
	for _, ls := range h.holds {
		for _, l := range ls {
			if l.endCall >= 0 {
				continue
			}
			l.endCall, l.endRet = l.acqRet, never
			for _, w := range h.windows {
				if w.effect == Kill && w.target == l.proc && w.t0 >= l.acqRet {
					l.endCall, l.endRet = w.t0, w.t0
				}
			}
		}
	}
	return h, nil
}

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

// A modelCheck is one model over a promise's operations, strictly and with the
// documented windows excused.
type modelCheck struct {
	name            string // of the model, for the visualization's file
	model           porcupine.Model
	strict, relaxed []porcupine.Operation
}

// verdict runs each check per key, strictly and, where that fails,
// relaxed; a relaxed history that fails is written out for porcupine's
// visualization. A key with more than MaxOps operations is left to the
// direct sweep.
func (h *history) verdict(checks []modelCheck, o Options, kind string) (verdict string, failures []string) {
	excused, skipped := 0, 0
	for _, c := range checks {
		keys, strictParts := byKey(c.strict)
		rkeys, relaxedParts := byKey(c.relaxed)
		relaxedOf := map[string][]porcupine.Operation{}
		for i, k := range rkeys {
			relaxedOf[k] = relaxedParts[i]
		}
		what := strings.TrimSpace(kind + " " + c.name)
		for i, k := range keys {
			if len(strictParts[i]) > o.MaxOps {
				skipped++
				continue
			}
			if porcupine.CheckOperationsTimeout(c.model, strictParts[i], o.Timeout) == porcupine.Ok {
				continue
			}
			res, info := porcupine.CheckOperationsVerbose(c.model, relaxedOf[k], o.Timeout)
			switch res {
			case porcupine.Ok:
				excused++
				continue
			case porcupine.Unknown:
				failures = append(failures, fmt.Sprintf("%s: %s: the checker timed out after %v on %d operations", what, k, o.Timeout, len(relaxedOf[k])))
				continue
			}
			path := filepath.Join(o.HTMLDir, fmt.Sprintf("%shistory-%s-%s.html", o.Name, strings.ReplaceAll(what, " ", "-"), safeName(k)))
			if err := porcupine.VisualizePath(c.model, info, path); err != nil {
				failures = append(failures, fmt.Sprintf("%s: %s: not linearizable outside the documented windows (visualization failed: %v)", what, k, err))
				continue
			}
			failures = append(failures, fmt.Sprintf("%s: %s: not linearizable outside the documented windows; see %s", what, k, path))
		}
	}
	switch {
	case len(failures) > 0:
		verdict = "NOT LINEARIZABLE"
	case excused > 0:
		verdict = "linearizable outside the windows"
	default:
		verdict = "linearizable"
	}
	if skipped > 0 {
		verdict += fmt.Sprintf(" (%d keys over %d operations: sweep only)", skipped, o.MaxOps)
	}
	return verdict, failures
}

func safeName(k string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == os.PathSeparator || r < ' ' {
			return '_'
		}
		return r
	}, k)
}

// A violation counted directly (the checker says whether any exist; these
// say how many, and where).
type violation struct {
	t      int64  // when it happened
	window string // the documented window it falls in; "" outside all
	what   string
}

// windowMeets names a window of one of the effects that meets [t0, t1],
// if any.
func (h *history) windowMeets(t0, t1 int64, effects ...string) string {
	for _, w := range h.windows {
		if slices.Contains(effects, w.effect) && w.t0 <= t1 && t0 <= w.t1 {
			return w.name
		}
	}
	return ""
}

// holdFacts returns every operation's interval and the violations: two
// believed holders of a lock at once, a token not larger than one granted
// earlier, more believed holders of a semaphore than its limit. An
// overlap is excused as the relaxed check excuses it (it is gone once the
// excused parts of the beliefs are cut out), by the window of a cut that
// removed it; an overlap left after the cuts is a violation outside the
// windows. A smaller token is excused only when it was asked for during a
// ClockBack window.
func (h *history) holdFacts(kind string) ([][2]int64, []violation) {
	var ops [][2]int64
	for _, l := range h.holds[kind] {
		ops = append(ops, [2]int64{l.acqCall, l.acqRet}, [2]int64{l.endCall, l.endCall})
	}
	strict := overlaps(h.beliefs(kind, false))
	relaxed := overlaps(h.beliefs(kind, true))
	left := map[[2]any]bool{} // (hold, moment) of each overlap left after the cuts
	var viol []violation
	for _, o := range relaxed {
		left[[2]any{o.h, o.t}] = true
		viol = append(viol, violation{o.t, "", o.what()})
	}
	for _, o := range strict {
		if left[[2]any{o.h, o.t}] {
			continue
		}
		win := ""
		for _, x := range append([]*hold{o.h}, o.with...) {
			for _, c := range x.cuts {
				if win == "" && c.t0 <= o.t && o.t <= c.t1 {
					win = c.window
				}
			}
		}
		if win == "" { // cut out of a belief whose part at o.t was excused
			for _, x := range append([]*hold{o.h}, o.with...) {
				if win == "" && len(x.cuts) > 0 {
					win = x.cuts[0].window
				}
			}
		}
		if win == "" {
			win = "?"
		}
		viol = append(viol, violation{o.t, win, o.what()})
	}
	viol = append(viol, h.lateGrants(kind)...)
	if kind == Lock {
		viol = append(viol, h.tokenFacts()...)
	}
	return ops, viol
}

// lateGrants are the holds of kind returned through replies held longer
// than their lease (see Late): each had lapsed before its holder believed
// it, whoever else took the key meanwhile. No window excuses them.
func (h *history) lateGrants(kind string) []violation {
	var viol []violation
	for _, w := range h.windows {
		if w.effect != Late {
			continue
		}
		for _, l := range h.holds[kind] {
			if l.proc == w.target && l.ttl > 0 && l.ttl <= w.delay && w.t0+w.delay <= l.acqRet && l.acqRet < w.t1 {
				viol = append(viol, violation{l.acqRet, "", fmt.Sprintf(
					"%s: lease %d of %s returned as held %v into %q, whose replies were held %v (past its %v lease)",
					l.key, l.n, l.proc, time.Duration(l.acqRet-w.t0).Round(time.Millisecond), w.name,
					time.Duration(w.delay), time.Duration(l.ttl))})
			}
		}
	}
	return viol
}

// overlap: at moment t, when h's belief began (or resumed), others
// believed already, as many as its limit or more.
type overlap struct {
	h    *hold
	t    int64
	with []*hold
}

func (o overlap) what() string {
	return fmt.Sprintf("%s: lease %d of %s granted while %d others believed they held it", o.h.key, o.h.n, o.h.proc, len(o.with))
}

// overlaps sweeps the beliefs of each key in time order.
func overlaps(bs []belief) []overlap {
	byKey := map[string][]belief{}
	for _, b := range bs {
		byKey[b.h.key] = append(byKey[b.h.key], b)
	}
	var out []overlap
	for _, bs := range byKey {
		sort.Slice(bs, func(i, j int) bool { return bs[i].a < bs[j].a })
		var active []belief
		for _, b := range bs {
			active = slices.DeleteFunc(active, func(x belief) bool { return x.b <= b.a })
			if len(active) >= max(b.h.limit, 1) {
				o := overlap{h: b.h, t: b.a}
				for _, x := range active {
					o.with = append(o.with, x.h)
				}
				out = append(out, o)
			}
			active = append(active, b)
		}
	}
	return out
}

// tokenFacts: a grant that surely came after another (its acquire was
// called after the other's returned) has a larger token.
func (h *history) tokenFacts() []violation {
	byKey := map[string][]*hold{}
	for _, l := range h.holds[Lock] {
		byKey[l.key] = append(byKey[l.key], l)
	}
	var viol []violation
	for key, ls := range byKey {
		byRet := slices.Clone(ls)
		sort.Slice(byRet, func(i, j int) bool { return byRet[i].acqRet < byRet[j].acqRet })
		byCall := slices.Clone(ls)
		sort.Slice(byCall, func(i, j int) bool { return byCall[i].acqCall < byCall[j].acqCall })
		var best *hold
		i := 0
		for _, l := range byCall {
			for ; i < len(byRet) && byRet[i].acqRet < l.acqCall; i++ {
				if best == nil || byRet[i].token > best.token {
					best = byRet[i]
				}
			}
			if best != nil && l.token <= best.token {
				viol = append(viol, violation{l.acqRet, h.windowMeets(l.acqCall, l.acqRet, ClockBack),
					fmt.Sprintf("%s: lease %d of %s got token %d after lease %d got %d", key, l.n, l.proc, l.token, best.n, best.token)})
			}
		}
	}
	return viol
}

// fanoutFacts returns every operation's interval and the outcomes no run
// of the key produced, and the errors that reached a caller of another run:
// a job's error reaches only the callers of its run, which called before
// the run published it (so before the first caller got it, and before the
// next job of the key started). No window excuses either.
func (h *history) fanoutFacts() ([][2]int64, []violation) {
	var ops [][2]int64
	produced := map[string]bool{}
	firstGot := map[string]int64{} // key\x00value: the first return of a caller that got it
	for _, r := range h.runs {
		ops = append(ops, [2]int64{r.call.T, r.call.T})
		produced[r.call.Key+"\x00"+r.call.Value] = true
	}
	var viol []violation
	for _, c := range h.calls {
		ops = append(ops, [2]int64{c.call.T, c.ret.T})
		k := c.call.Key + "\x00" + c.ret.Value
		if !produced[k] {
			viol = append(viol, violation{c.ret.T, "", fmt.Sprintf("%s: %s got %q, which no run of the key returned", c.call.Key, c.call.Proc, c.ret.Value)})
		}
		if t, ok := firstGot[k]; !ok || c.ret.T < t {
			firstGot[k] = c.ret.T
		}
	}
	published := map[string]int64{} // key\x00value of a job's error: the latest its run may have published it
	for _, r := range h.runs {
		if r.call.JobErr {
			k := r.call.Key + "\x00" + r.call.Value
			published[k] = min(h.publishUntil(r), firstGot[k])
		}
	}
	for _, c := range h.calls {
		if t, ok := published[c.call.Key+"\x00"+c.ret.Value]; ok && c.call.T >= t {
			viol = append(viol, violation{c.ret.T, "", fmt.Sprintf("%s: %s got the job error %q of a run that had published it before the call (%v earlier)",
				c.call.Key, c.call.Proc, c.ret.Value, time.Duration(c.call.T-t))})
		}
	}
	return ops, viol
}

// livenessFacts returns the operations that failed (and the leases lost)
// for any reason but contention, and the violations: those outside every
// window, settle after its end included.
func (h *history) livenessFacts(settle int64) ([][2]int64, []violation) {
	var ops [][2]int64
	var viol []violation
	note := func(proc string, t0, t1 int64, what string) {
		ops = append(ops, [2]int64{t0, t1})
		win := ""
		for _, w := range h.windows {
			// A fault a process injected on itself (a lost reply) fails
			// its call during the window; the driver's faults may take a
			// while to heal after theirs (reconnecting, finding a new
			// primary).
			after := settle
			if w.recorder == w.target {
				after = settle / 10
			}
			if win == "" && w.hits(proc) && w.t0 <= t1 && t0 <= w.t1+after {
				win = w.name
			}
		}
		viol = append(viol, violation{t1, win, what})
	}
	for _, s := range h.failed {
		if s.call.Kind != Fanout && strings.Contains(s.ret.Err, "not acquired") {
			continue // contention, not a failure
		}
		note(s.call.Proc, s.call.T, s.ret.T, fmt.Sprintf("%s %s of %s by %s failed: %s", s.call.Kind, s.call.Op, s.call.Key, s.call.Proc, s.ret.Err))
	}
	for kind, ls := range h.holds {
		for _, l := range ls {
			if l.lost {
				note(l.proc, l.endCall, l.endCall, fmt.Sprintf("%s: lease %d of %s (%s) was lost", l.key, l.n, l.proc, kind))
			}
		}
	}
	return ops, viol
}

// rows attributes operations and violations to the faults whose windows
// they meet; the rest make the "no fault" row.
func (h *history) rows(promise string, ops [][2]int64, viol []violation, verdict string) []Row {
	var names []string
	wins := map[string][]window{}
	for _, w := range h.windows {
		if _, ok := wins[w.name]; !ok {
			names = append(names, w.name)
		}
		wins[w.name] = append(wins[w.name], w)
	}
	meets := func(name string, t0, t1 int64) bool {
		for _, w := range wins[name] {
			if w.t0 <= t1 && t0 <= w.t1 {
				return true
			}
		}
		return false
	}
	rows := map[string]*Row{}
	for _, name := range append([]string{"no fault"}, names...) {
		rows[name] = &Row{Fault: name, Promise: promise, Verdict: verdict}
	}
	for _, o := range ops {
		hit := false
		for _, name := range names {
			if meets(name, o[0], o[1]) {
				rows[name].Ops++
				hit = true
			}
		}
		if !hit {
			rows["no fault"].Ops++
		}
	}
	for _, v := range viol {
		if v.window != "" {
			rows[v.window].In++
			continue
		}
		name := "no fault"
		for _, n := range names {
			if meets(n, v.t, v.t) {
				name = n
			}
		}
		rows[name].Out++
	}
	var out []Row
	for _, name := range append([]string{"no fault"}, names...) {
		out = append(out, *rows[name])
	}
	return out
}
