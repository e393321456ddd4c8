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
	proc  string
	lease int   // lock, sem: which lease
	token int64 // lock Acquire
	limit int   // sem Acquire
	value string
}

// lockState: the believed holder (0: none) and the largest token granted
// since the last reset.
type lockState struct {
	holder int
	last   int64
}

// lockModel: Acquire is legal on a free lock with a token larger than any
// granted before; a Release ends its lease's hold (releasing a lease that
// no longer holds — after a Reset — changes nothing); a Reset (a fault
// that lost writes) frees the lock and forgets its tokens; a ClockBack
// forgets its tokens.
var lockModel = porcupine.Model{
	Partition: byKey,
	Init:      func() any { return lockState{} },
	Step: func(state, in, _ any) (bool, any) {
		s, i := state.(lockState), in.(input)
		switch i.op {
		case Acquire:
			return s.holder == 0 && i.token > s.last, lockState{i.lease, i.token}
		case Release:
			if s.holder == i.lease {
				s.holder = 0
			}
			return true, s
		case Reset:
			return true, lockState{}
		case ClockBack:
			return true, lockState{holder: s.holder}
		}
		return false, s
	},
	DescribeOperation: describe,
	DescribeState: func(state any) string {
		s := state.(lockState)
		if s.holder == 0 {
			return fmt.Sprintf("free, last token %d", s.last)
		}
		return fmt.Sprintf("held by lease %d, token %d", s.holder, s.last)
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

// semModel: Acquire is legal while fewer than limit leases hold; Release
// ends a lease's hold; Reset (lost writes, keys dropped early) forgets
// every holder.
var semModel = porcupine.Model{
	Partition: byKey,
	Init:      func() any { return semState("") },
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
		case Reset:
			return true, semState("")
		case ClockBack:
			return true, s
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
// (at some moment after its job returned, or never); a caller's outcome
// must be the register's value at some moment of its call: published
// before it returned, by a run of its key, and not superseded before it
// called. A Reset (lost writes) lets the register hold any older value.
var fanoutModel = porcupine.Model{
	Partition: byKey,
	Init:      func() any { return "" },
	Step: func(state, in, _ any) (bool, any) {
		s, i := state.(string), in.(input)
		switch i.op {
		case Run:
			return true, i.value
		case Call:
			return s == i.value || s == anyOutcome, s
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

// byKey partitions a history by key: the promises are per key. The key is
// in each operation's Metadata; a Reset (Metadata nil) belongs to every
// partition.
func byKey(ops []porcupine.Operation) [][]porcupine.Operation {
	var resets []porcupine.Operation
	m := map[string][]porcupine.Operation{}
	var keys []string
	for _, o := range ops {
		k, ok := o.Metadata.(string)
		if !ok {
			resets = append(resets, o)
			continue
		}
		if _, seen := m[k]; !seen {
			keys = append(keys, k)
		}
		m[k] = append(m[k], o)
	}
	slices.Sort(keys)
	var out [][]porcupine.Operation
	for _, k := range keys {
		out = append(out, append(m[k], resets...))
	}
	return out
}
