package history

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Violations found directly in the history (outside porcupine): overlaps
// of beliefs, late grants, tokens gone back, outcomes, liveness.

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
		viol = append(viol, violation{o.t, "", h.overlapWhat(o)})
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
		viol = append(viol, violation{o.t, win, h.overlapWhat(o)})
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

// overlapWhat says what an overlap is, with the story of each hold in it
// (times from the history's start), so that a failure in a log that is
// all one has (CI) can be understood.
func (h *history) overlapWhat(o overlap) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: at %s lease %d of %s began believing while %d others believed they held it:", o.h.key, h.at(o.t), o.h.n, o.h.proc, len(o.with))
	for _, x := range append([]*hold{o.h}, o.with...) {
		b.WriteString("\n\t" + h.story(x))
	}
	return b.String()
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

// at is t as an offset from the history's start.
func (h *history) at(t int64) string {
	if t == never {
		return "never"
	}
	return fmt.Sprintf("+%.3fs", float64(t-h.start)/1e9)
}

// story is a hold's life: asked, granted (token), ended, and the parts
// of its belief the windows excuse.
func (h *history) story(l *hold) string {
	s := fmt.Sprintf("lease %d of %s: asked %s, granted %s (token %d, lease %v), %s %s", l.n, l.proc,
		h.at(l.acqCall), h.at(l.acqRet), l.token, time.Duration(l.ttl), l.how, h.at(l.endCall))
	for _, c := range l.cuts {
		s += fmt.Sprintf("; excused %s to %s (%s)", h.at(c.t0), h.at(c.t1), c.window)
	}
	return s
}

// timeline lists the fault windows, with times from the history's start
// (as the failures give them). The windows a process opened on itself (a
// lost reply, one a second or so in each soaker) are only counted, so
// that the list stays short enough to read in a log.
func (h *history) timeline() string {
	var b strings.Builder
	b.WriteString("fault windows:")
	own := 0
	for _, w := range h.windows {
		if w.target != "" && w.target == w.recorder {
			own++
			continue
		}
		fmt.Fprintf(&b, "\n\t%s to %s: %s", h.at(w.t0), h.at(w.t1), w.name)
		if w.target != "" {
			b.WriteString(" (" + w.target + ")")
		}
	}
	if own > 0 {
		fmt.Fprintf(&b, "\n\tand %d windows processes opened on themselves", own)
	}
	return b.String()
}
