package history

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
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
	// Timeline lists the fault windows with times from the history's
	// start, as the failures give them.
	Timeline string
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
	lost            bool   // its holder saw Done closed
	how             string // how it ended, for a failure's story
	cuts            []cut  // the parts of its belief the windows excuse, sorted, disjoint
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
	start   int64              // the first event: failures give times from it
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
	r.Timeline = h.timeline()
	return r, nil
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
