package history

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The checker's later rules: what each fault window excuses and for how
// long, fanout rounds after a reset, late grants, errors and liveness.

func TestCheck_clockBackExcusesTokensNotOverlaps(t *testing.T) {
	tokens := []ev{
		call("a", 1, 0, acquire("k")), ret("a", 1, 1, granted(5)),
		call("a", 2, 2, release(1)), ret("a", 2, 3, Event{}),
		call("drv", 1, 4, fault("clock back", ClockBack, "")), ret("drv", 1, 12, Event{}),
		call("b", 1, 10, acquire("k")), ret("b", 1, 11, granted(4)),
		call("b", 2, 12, release(1)), ret("b", 2, 13, Event{}),
	}
	if r, _ := check(t, tokens...); len(r.Failures) != 0 || row(t, r, "clock back", Lock).In != 1 {
		t.Fatalf("failures %v, rows %+v", r.Failures, r.Rows)
	}
	overlap := []ev{
		call("a", 1, 0, acquire("k")), ret("a", 1, 1, granted(1)),
		call("drv", 1, 2, fault("clock back", ClockBack, "")), ret("drv", 1, 20, Event{}),
		call("b", 1, 3, acquire("k")), ret("b", 1, 4, granted(2)),
		call("a", 2, 5, release(1)), ret("a", 2, 6, Event{}),
		call("b", 2, 7, release(1)), ret("b", 2, 8, Event{}),
	}
	if r, _ := check(t, overlap...); len(r.Failures) == 0 {
		t.Fatal("a clock going back excused two holders at once")
	}
}

// Found by review: a Reset long before a round let every later round of
// any key read anything.
func TestCheck_fanoutResetDoesNotLeakIntoLaterRounds(t *testing.T) {
	r, _ := check(t,
		call("drv", 1, 0, fault("restart", Reset, "")), ret("drv", 1, 1, Event{}),
		call("a", 1, 1000, fanCall()), call("a", 2, 1001, fanRun("v1")), ret("a", 1, 1002, outcome("v1")),
		call("a", 3, 1003, fanCall()), call("a", 4, 1004, fanRun("v2")), ret("a", 3, 1005, outcome("v2")),
		call("b", 1, 1006, fanCall()), ret("b", 1, 1007, outcome("v1")))
	if len(r.Failures) == 0 {
		t.Fatalf("a superseded outcome 1s after a reset passed; rows %+v", r.Rows)
	}
}

// P18: a generation that no longer leads never publishes. A run may
// publish only before the next job of its key starts.
func TestCheck_fanoutStaleRunPublishingLateFails(t *testing.T) {
	evs := []ev{
		call("a", 1, 0, lead(0)), call("a", 2, 1, ran("v1", 0)),
		call("b", 1, 2, fanCall()), call("b", 2, 2, lead(2)), call("b", 3, 3, ran("v2", 2)), ret("b", 1, 4, outcome("v2")),
		call("c", 1, 5, fanCall()), ret("c", 1, 6, outcome("v2")),
		call("d", 1, 7, fanCall()), ret("d", 1, 8, outcome("v1")),
	}
	if r, _ := check(t, evs...); len(r.Failures) != 1 {
		t.Fatalf("a stale run's late outcome passed: %v", r.Failures)
	}
	// Without the second job's start, v1 could have been published late.
	if r, _ := check(t, slices.Delete(slices.Clone(evs), 3, 4)...); len(r.Failures) != 0 {
		t.Fatalf("failures: %v", r.Failures)
	}
}

// Found by review: a Reset's window must not excuse overlaps between
// grants asked for after it.
func TestCheck_resetExcusesNothingAfterItsWindow(t *testing.T) {
	r, _ := check(t,
		call("drv", 1, 0, fault("restart", Reset, "")), ret("drv", 1, 10, Event{}),
		call("a", 1, 100, acquire("k")), ret("a", 1, 101, granted(10)),
		call("b", 1, 500, acquire("k")), ret("b", 1, 501, granted(20)),
		call("a", 2, 600, release(1)), ret("a", 2, 601, Event{}),
		call("b", 2, 602, release(1)), ret("b", 2, 603, Event{}))
	if len(r.Failures) == 0 {
		t.Fatalf("an overlap of two grants made after the restart was excused: %+v", r.Rows)
	}
}

// Both sides of a split brain grant: every grant asked for during the
// window is excused, however many.
func TestCheck_splitBrainExcusesEveryGrantInItsWindow(t *testing.T) {
	r, _ := check(t,
		call("drv", 1, 0, fault("split brain", Reset, "")), ret("drv", 1, 100, Event{}),
		call("p", 1, 10, acquire("k")), ret("p", 1, 11, granted(100)),
		call("q", 1, 12, acquire("k")), ret("q", 1, 13, granted(200)),
		call("p", 2, 14, release(1)), ret("p", 2, 15, Event{}),
		call("q", 2, 20, release(1)), ret("q", 2, 21, Event{}),
		call("p", 3, 16, acquire("k")), ret("p", 3, 17, granted(300)),
		call("q", 3, 22, acquire("k")), ret("q", 3, 23, granted(400)),
		call("p", 4, 30, release(3)), ret("p", 4, 31, Event{}),
		call("q", 4, 32, release(3)), ret("q", 4, 33, Event{}))
	if len(r.Failures) != 0 {
		t.Fatalf("overlaps inside one split brain failed: %v", r.Failures)
	}
}

// Found by review: a pause excuses only what follows its start.
func TestCheck_pauseDoesNotExcuseAnEarlierOverlap(t *testing.T) {
	r, _ := check(t,
		call("a", 1, 0, acquire("k")), ret("a", 1, 1, granted(1)),
		call("b", 1, 2, acquire("k")), ret("b", 1, 3, granted(2)),
		call("b", 2, 4, release(1)), ret("b", 2, 5, Event{}),
		call("drv", 1, 10, fault("SIGSTOP", Pause, "a")), ret("drv", 1, 20, Event{}),
		call("a", 2, 21, release(1)), ret("a", 2, 22, Event{}))
	// Both the checker and the sweep (which alone covers large keys).
	if len(r.Failures) != 2 || row(t, r, "no fault", Lock).Out != 1 {
		t.Fatalf("an overlap before the pause began was excused by it: %v %+v", r.Failures, r.Rows)
	}
}

// Found by review: a window whose recorder was killed before closing it
// ends with its recorder's last event, not at the end of time.
func TestCheck_unclosedWindowEndsWithItsRecorder(t *testing.T) {
	r, _ := check(t,
		call("p0", 1, 0, fault("a script's reply lost", None, "")), call("p0", 2, 5, acquire("x")),
		call("a", 1, 1000, acquire("k")), ret("a", 1, 1001, granted(1)),
		call("b", 1, 1002, acquire("k")), ret("b", 1, 1003, granted(2)),
		call("a", 2, 1004, release(1)), ret("a", 2, 1005, Event{}),
		call("b", 2, 1006, release(1)), ret("b", 2, 1007, Event{}))
	if got := row(t, r, "no fault", Lock); got.Out != 1 {
		t.Fatalf("a violation 1s later was attributed to the unclosed window: %+v", r.Rows)
	}
}

func TestCheck_malformedLineInsideAFileIsAnError(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "h.jsonl"), []byte("{\"p\":\"a\",\"id\":1,\"t\":1}\ngarbage\n{\"p\":\"a\",\"id\":2,\"t\":2}\n"), 0o644)
	if _, err := Check(dir, Options{HTMLDir: dir}); err == nil {
		t.Fatal("a malformed line inside a history was skipped")
	}
}

// lead and ran are a job's start and return, for a job that started at ms.
func lead(ms int64) Event { return Event{Kind: Fanout, Op: Lead, Key: "f", Since: ms * 1e6} }
func ran(v string, ms int64) Event {
	return Event{Kind: Fanout, Op: Run, Key: "f", Value: v, Since: ms * 1e6}
}

// Found by mutation: a grant merely in flight during a pause (returned
// after the process resumed) is not excused by it: a late grant returned
// as held while another holds is a violation.
func TestCheck_pauseExcusesOnlyLeasesBelievedBeforeIt(t *testing.T) {
	r, _ := check(t,
		call("a", 1, 0, acquire("k")), // in flight when a is stopped
		call("drv", 1, 2, fault("SIGSTOP", Pause, "a")), ret("drv", 1, 20, Event{}),
		call("b", 1, 3, acquire("k")), ret("b", 1, 15, granted(2)),
		ret("a", 1, 21, granted(1)),
		call("a", 2, 22, release(1)), ret("a", 2, 23, Event{}),
		call("b", 2, 24, release(1)), ret("b", 2, 25, Event{}),
	)
	if len(r.Failures) == 0 {
		t.Fatalf("a grant returned after the pause, while another held, was excused: %+v", r.Rows)
	}
}

// A pause excuses a holder only until it resumed (and Grace): one that
// goes on believing long after is checked again.
func TestCheck_pauseExcuseEndsSoonAfterItsWindow(t *testing.T) {
	evs := func(lost int64) []ev {
		return []ev{
			call("a", 1, 0, acquire("k")), ret("a", 1, 1, granted(1)),
			call("drv", 1, 2, fault("SIGSTOP", Pause, "a")), ret("drv", 1, 20, Event{}),
			call("b", 1, 3, acquire("k")), ret("b", 1, 15, granted(2)),
			call("a", 2, lost, Event{Kind: Lock, Op: Lost, Lease: 1}),
			call("b", 2, 2000, release(1)), ret("b", 2, 2001, Event{}),
		}
	}
	if r, _ := check(t, evs(21)...); len(r.Failures) != 0 || row(t, r, "SIGSTOP", Lock).In != 1 {
		t.Fatalf("a holder that saw its loss on resuming: failures %v, rows %+v", r.Failures, r.Rows)
	}
	r, _ := check(t, evs(1500)...)
	if len(failuresOf(r, Lock)) == 0 {
		t.Fatalf("a paused holder believing 1.5s after it resumed, while another held, was excused: %v %+v", r.Failures, r.Rows)
	}
}

// A Reset frees believed holders only for a lease (and Grace) after its
// window: an old holder that never learns of the loss is a violation.
func TestCheck_resetExcuseEndsALeaseAfterItsWindow(t *testing.T) {
	evs := func(lost int64) []ev {
		return []ev{
			call("a", 1, 0, Event{Kind: Lock, Op: Acquire, Key: "k", TTL: 1000}), ret("a", 1, 1, granted(1)),
			call("drv", 1, 10, fault("restart", Reset, "")), ret("drv", 1, 20, Event{}),
			call("b", 1, 30, acquire("k")), ret("b", 1, 31, granted(2)),
			call("a", 2, lost, Event{Kind: Lock, Op: Lost, Lease: 1}),
			call("b", 2, 5000, release(1)), ret("b", 2, 5001, Event{}),
		}
	}
	if r, _ := check(t, evs(900)...); len(r.Failures) != 0 || row(t, r, "restart", Lock).In != 1 {
		t.Fatalf("an old holder told within its lease: failures %v, rows %+v", r.Failures, r.Rows)
	}
	if r, _ := check(t, evs(3000)...); len(failuresOf(r, Lock)) == 0 {
		t.Fatalf("an old holder believing 3s after a restart (1s leases) was excused: %v %+v", r.Failures, r.Rows)
	}
}

// P19: through replies held longer than its lease, no grant comes back as
// held, whether or not anyone else took the key meanwhile; a grant that
// came back before the delay could hold it, another process's, and a
// lease longer than the delay are not late.
func TestCheck_lateGrantFailsWithoutAnOverlap(t *testing.T) {
	late := Event{Kind: Fault, Op: "slow replies", Effect: Late, Target: "a", Delay: 1100}
	evs := func(kind string, ttl, at int64, proc string) []ev {
		acq := Event{Kind: kind, Op: Acquire, Key: "k", Limit: 2, TTL: ttl}
		return []ev{
			call("drv", 1, 0, late), ret("drv", 1, 6000, Event{}),
			call(proc, 1, at-1200, acq), ret(proc, 1, at, granted(1)),
			call(proc, 2, at+10, Event{Kind: kind, Op: Release, Lease: 1}), ret(proc, 2, at+11, Event{}),
		}
	}
	for _, kind := range []string{Lock, Semaphore} {
		r, _ := check(t, evs(kind, 1000, 3000, "a")...)
		if f := failuresOf(r, kind); len(f) != 1 || !strings.Contains(f[0], "replies were held 1.1s") {
			t.Errorf("%s: a grant returned 3s into replies held 1.1s (1s lease): failures %v", kind, r.Failures)
		}
		for _, c := range []struct {
			what    string
			ttl, at int64
			proc    string
		}{
			{"returned before the delay could hold it", 1000, 1000, "a"},
			{"returned after the window", 1000, 6500, "a"},
			{"another process's", 1000, 3000, "b"},
			{"a lease longer than the delay", 2000, 3000, "a"},
		} {
			if r, _ := check(t, evs(kind, c.ttl, c.at, c.proc)...); len(r.Failures) != 0 {
				t.Errorf("%s: a grant %s was taken for late: %v", kind, c.what, r.Failures)
			}
		}
	}
}

// P18: a job's error reaches only the callers of its run; a caller that
// joined after the run published it must not get it (it runs the job
// again, or gets a later result).
func TestCheck_fanoutErrorReachesOnlyItsRunsCallers(t *testing.T) {
	failed := Event{Kind: Fanout, Op: Run, Key: "f", Value: "error e1", JobErr: true}
	evs := []ev{
		call("a", 1, 0, fanCall()), call("a", 2, 5, failed), ret("a", 1, 7, outcome("error e1")),
		call("b", 1, 1, fanCall()), ret("b", 1, 8, outcome("error e1")),
	}
	if r, _ := check(t, evs...); len(r.Failures) != 0 {
		t.Fatalf("callers of the run: failures %v", r.Failures)
	}
	late := append(slices.Clone(evs), call("c", 1, 9, fanCall()), ret("c", 1, 10, outcome("error e1")))
	if r, _ := check(t, late...); len(r.Failures) == 0 || row(t, r, "no fault", Fanout).Out != 1 {
		t.Fatalf("a caller that joined after the error was published got it: %v %+v", r.Failures, r.Rows)
	}
	// A result, by contrast, stays readable for later callers.
	ok := Event{Kind: Fanout, Op: Run, Key: "f", Value: "v1"}
	r, _ := check(t,
		call("a", 1, 0, fanCall()), call("a", 2, 5, ok), ret("a", 1, 7, outcome("v1")),
		call("c", 1, 9, fanCall()), ret("c", 1, 10, outcome("v1")))
	if len(r.Failures) != 0 {
		t.Fatalf("a stored result read later: failures %v", r.Failures)
	}
}

// Liveness: outside the windows (and Settle after them) nothing fails but
// for contention, and no lease is lost.
func TestCheck_livenessFailuresOutsideTheWindows(t *testing.T) {
	for _, tc := range []struct {
		name string
		evs  []ev
		fail bool
	}{
		{"contention", []ev{call("a", 1, 0, acquire("k")), ret("a", 1, 3000, Event{Err: "dlock: not acquired: context deadline exceeded"})}, false},
		{"unavailable", []ev{call("a", 1, 0, acquire("k")), ret("a", 1, 5, Event{Err: "dlock: redis unavailable: EOF"})}, true},
		{"unavailable in a window", []ev{
			call("drv", 1, 0, fault("restart", Reset, "")), ret("drv", 1, 2, Event{}),
			call("a", 1, 500, acquire("k")), ret("a", 1, 505, Event{Err: "dlock: redis unavailable: EOF"})}, false},
		{"unavailable after Settle", []ev{
			call("drv", 1, 0, fault("restart", Reset, "")), ret("drv", 1, 2, Event{}),
			call("a", 1, 1500, acquire("k")), ret("a", 1, 1505, Event{Err: "dlock: redis unavailable: EOF"})}, true},
		{"a fanout timeout", []ev{call("a", 1, 0, fanCall()), ret("a", 1, 2000, Event{Err: "dlock: timed out waiting for the result"})}, true},
		{"a lease lost", []ev{
			call("a", 1, 0, acquire("k")), ret("a", 1, 1, granted(1)),
			call("a", 2, 500, Event{Kind: Lock, Op: Lost, Lease: 1})}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := check(t, tc.evs...)
			if got := len(r.Failures) > 0; got != tc.fail {
				t.Fatalf("failures %v; want failing %v", r.Failures, tc.fail)
			}
		})
	}
}
