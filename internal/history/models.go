package history

import (
	"fmt"
	"slices"
	"strings"

	"github.com/anishathalye/porcupine"
)

// An input is one operation of a model (everything is known at its call
// but the moment it took effect, so no outputs).
type input struct {
	op    string // Acquire, Release (also Lost), Run, Call, Reset, or ClockBack
	proc  string // for a fault window: its name
	lease int    // lock, sem: which lease
	token int64  // lock Acquire
	limit int    // sem Acquire
	call  int64  // lock Acquire (tokens): when it was called
	until int64  // ClockBack: the end of its window
	value string
	// resumed: lock, sem Acquire: a belief checked again after an excuse
	// ended (not a grant)
	resumed bool
}

// tokenState: the largest token granted, and after a ClockBack the
// largest granted before it (floor), which binds again the acquires called
// after its window (until).
type tokenState struct {
	last, floor, until int64
}

// tokenModel: fencing tokens grow with the real-time order of grants (a
// grant happens during its acquire's call). A ClockBack lets the acquires
// called before its window ends have smaller tokens. (Who holds is
// holdModel's business.)
var tokenModel = porcupine.Model{
	Init: func() any { return tokenState{} },
	Step: func(state, in, _ any) (bool, any) {
		s, i := state.(tokenState), in.(input)
		switch i.op {
		case Acquire:
			ok := i.token > s.last && (i.call <= s.until || i.token > s.floor)
			s.last = i.token
			return ok, s
		case ClockBack:
			return true, tokenState{floor: max(s.floor, s.last), until: i.until}
		}
		return false, s
	},
	DescribeOperation: describe,
	DescribeState: func(state any) string {
		s := state.(tokenState)
		return fmt.Sprintf("last token %d", s.last)
	},
}

// semState: the believed holders, sorted (a string, so states compare
// with ==).
type semState string

func (s semState) holders() []string {
	if s == "" {
		return nil
	}
	return strings.Split(string(s), ",")
}

// holdModel: who believes they hold a lock (limit 1) or a semaphore. An
// Acquire — at the moment its caller got the lease, when its belief
// starts (or, in the relaxed check, resumes after an excuse) — is legal
// while fewer than limit leases hold; Release ends a lease's hold (Release
// of a lease that no longer holds changes nothing). The windows' excuses
// are cut out of the beliefs before (see history.relax).
var holdModel = porcupine.Model{
	Init: func() any { return semState("") },
	Step: func(state, in, _ any) (bool, any) {
		s, i := state.(semState), in.(input)
		h := s.holders()
		id := fmt.Sprint(i.lease)
		switch i.op {
		case Acquire:
			if len(h) >= i.limit {
				return false, s
			}
			h = append(h, id)
			slices.Sort(h)
			return true, semState(strings.Join(h, ","))
		case Release:
			return true, semState(strings.Join(slices.DeleteFunc(h, func(x string) bool { return x == id }), ","))
		}
		return false, s
	},
	DescribeOperation: describe,
	DescribeState:     func(state any) string { return "holders [" + string(state.(semState)) + "]" },
}

// anyOutcome is the fanout state after a Reset: the stored result may be
// any earlier one, or none.
const anyOutcome = "\x00any"

// fanoutModel: a key's outcome is a register. A Run publishes its value
// (at some moment after its job returned and before the next generation's
// job started, or never); a caller's outcome must be the register's value
// at some moment of its call: published before it returned, by a run of
// its key, and not superseded before it called. A Reset (lost writes)
// lets the register hold any value, until a caller reads one.
var fanoutModel = porcupine.Model{
	Init: func() any { return "" },
	Step: func(state, in, _ any) (bool, any) {
		s, i := state.(string), in.(input)
		switch i.op {
		case Run:
			return true, i.value
		case Call:
			if s == anyOutcome {
				return true, i.value
			}
			return s == i.value, s
		case Reset:
			return true, anyOutcome
		case ClockBack:
			return true, s
		}
		return false, s
	},
	DescribeOperation: describe,
	DescribeState: func(state any) string {
		if state == anyOutcome {
			return "any earlier outcome (after a reset)"
		}
		return fmt.Sprintf("outcome %q", state)
	},
}

func describe(in, _ any) string {
	i := in.(input)
	switch i.op {
	case Acquire:
		if i.resumed {
			return fmt.Sprintf("%s: still believes after its excuse ended (lease %d)", i.proc, i.lease)
		}
		if i.limit > 0 {
			return fmt.Sprintf("%s: acquire (lease %d)", i.proc, i.lease)
		}
		return fmt.Sprintf("%s: acquire → token %d (lease %d)", i.proc, i.token, i.lease)
	case Release:
		return fmt.Sprintf("%s: release lease %d", i.proc, i.lease)
	case Run:
		return fmt.Sprintf("%s: run returned %q", i.proc, i.value)
	case Call:
		return fmt.Sprintf("%s: call → %q", i.proc, i.value)
	}
	return fmt.Sprintf("%s (%s)", i.op, i.proc) // a fault window: proc is its name
}
