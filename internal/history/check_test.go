package history

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// ev is a compact event for hand-written histories: times in ms.
type ev struct {
	proc string
	id   int64
	ret  bool
	ms   int64
	e    Event
}

func call(proc string, id, ms int64, e Event) ev { return ev{proc, id, false, ms, e} }
func ret(proc string, id, ms int64, e Event) ev  { return ev{proc, id, true, ms, e} }

// check writes the events as one history file and checks it.
func check(t *testing.T, evs ...ev) (*Report, string) {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "h.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range evs {
		e := x.e
		e.Proc, e.ID, e.Ret, e.T = x.proc, x.id, x.ret, x.ms*1e6
		b, _ := json.Marshal(e)
		f.Write(append(b, '\n'))
	}
	f.WriteString(`{"torn`) // a process killed mid-write
	f.Close()
	r, err := Check(dir, Options{HTMLDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + r.Markdown("test"))
	return r, dir
}

func acquire(key string) Event { return Event{Kind: Lock, Op: Acquire, Key: key} }
func granted(tok int64) Event  { return Event{Token: tok} }
func release(lease int64) Event {
	return Event{Kind: Lock, Op: Release, Lease: lease}
}
func fault(name, effect, target string) Event {
	return Event{Kind: Fault, Op: name, Effect: effect, Target: target}
}

// failuresOf returns the failures of the promise of kind.
func failuresOf(r *Report, kind string) []string {
	var out []string
	for _, f := range r.Failures {
		if strings.HasPrefix(f, kind) {
			out = append(out, f)
		}
	}
	return out
}

// row returns the row of fault and the promise starting with kind.
func row(t *testing.T, r *Report, fault, kind string) Row {
	t.Helper()
	for _, x := range r.Rows {
		if x.Fault == fault && strings.HasPrefix(x.Promise, kind) {
			return x
		}
	}
	t.Fatalf("no row %s × %s", fault, kind)
	return Row{}
}

func TestCheck_lockSequentialHoldersPass(t *testing.T) {
	r, _ := check(t,
		call("a", 1, 0, acquire("k")), ret("a", 1, 1, granted(1)),
		call("a", 2, 5, release(1)), ret("a", 2, 6, Event{}),
		call("b", 1, 2, acquire("k")), ret("b", 1, 7, granted(2)),
		call("b", 2, 9, release(1)), ret("b", 2, 10, Event{}),
	)
	if len(r.Failures) != 0 {
		t.Fatalf("failures: %v", r.Failures)
	}
	if got := row(t, r, "no fault", Lock); got.Ops != 4 || got.Verdict != "linearizable" {
		t.Fatalf("row %+v", got)
	}
}

func TestCheck_lockOverlapFailsWithVisualization(t *testing.T) {
	r, dir := check(t,
		call("a", 1, 0, acquire("k")), ret("a", 1, 1, granted(1)),
		call("b", 1, 2, acquire("k")), ret("b", 1, 3, granted(2)),
		call("a", 2, 5, release(1)), ret("a", 2, 6, Event{}),
		call("b", 2, 7, release(1)), ret("b", 2, 8, Event{}),
	)
	if len(r.Failures) != 2 || !strings.Contains(r.Failures[0], filepath.Join(dir, "history-lock-holders-k.html")) {
		t.Fatalf("failures: %q", r.Failures)
	}
	// The overlap tells each hold's story, in times from the start.
	want := "k: at +0.003s lease 2 of b began believing while 1 others believed they held it:\n" +
		"\tlease 2 of b: asked +0.002s, granted +0.003s (token 2, lease 0s), released +0.007s\n" +
		"\tlease 1 of a: asked +0.000s, granted +0.001s (token 1, lease 0s), released +0.005s"
	if r.Failures[1] != "lock: "+want {
		t.Fatalf("failure %q, want %q", r.Failures[1], want)
	}
	if _, err := os.Stat(filepath.Join(dir, "history-lock-holders-k.html")); err != nil {
		t.Fatal(err)
	}
	if got := row(t, r, "no fault", Lock); got.Out != 1 || got.Verdict != "NOT LINEARIZABLE" {
		t.Fatalf("row %+v", got)
	}
}

func TestCheck_lockOverlapInAPauseIsExcused(t *testing.T) {
	r, _ := check(t,
		call("a", 1, 0, acquire("k")), ret("a", 1, 1, granted(1)),
		call("drv", 1, 2, fault("SIGSTOP", Pause, "a")), ret("drv", 1, 20, Event{}),
		call("b", 1, 3, acquire("k")), ret("b", 1, 15, granted(2)),
		call("a", 2, 21, release(1)), ret("a", 2, 22, Event{}),
		call("b", 2, 23, release(1)), ret("b", 2, 24, Event{}),
	)
	if len(r.Failures) != 0 {
		t.Fatalf("failures: %v", r.Failures)
	}
	if got := row(t, r, "SIGSTOP", Lock); got.In != 1 || got.Verdict != "linearizable outside the windows" {
		t.Fatalf("row %+v", got)
	}
	if want := "fault windows:\n\t+0.002s to +0.020s: SIGSTOP (a)"; r.Timeline != want {
		t.Fatalf("timeline %q, want %q", r.Timeline, want)
	}
}

func TestCheck_lockPauseExcusesOnlyItsProcess(t *testing.T) {
	r, _ := check(t,
		call("a", 1, 0, acquire("k")), ret("a", 1, 1, granted(1)),
		call("drv", 1, 2, fault("SIGSTOP", Pause, "c")), ret("drv", 1, 20, Event{}),
		call("b", 1, 3, acquire("k")), ret("b", 1, 15, granted(2)),
		call("a", 2, 21, release(1)), ret("a", 2, 22, Event{}),
		call("b", 2, 23, release(1)), ret("b", 2, 24, Event{}),
	)
	if len(r.Failures) == 0 {
		t.Fatal("a pause of another process excused the overlap")
	}
}

func TestCheck_lockTokensGrowWithRealTime(t *testing.T) {
	evs := []ev{
		call("a", 1, 0, acquire("k")), ret("a", 1, 1, granted(5)),
		call("a", 2, 2, release(1)), ret("a", 2, 3, Event{}),
		call("b", 1, 10, acquire("k")), ret("b", 1, 11, granted(4)),
		call("b", 2, 12, release(1)), ret("b", 2, 13, Event{}),
	}
	if r, _ := check(t, evs...); len(r.Failures) != 2 {
		t.Fatalf("a smaller later token passed: %v", r.Failures)
	}
	same := slices.Clone(evs)
	same[5] = ret("b", 1, 11, granted(5))
	if r, _ := check(t, same...); len(r.Failures) != 2 {
		t.Fatalf("a later grant of the same token passed: %v", r.Failures)
	}
	// Tokens are the server's clock: a restart in between excuses nothing.
	restart := append(slices.Clone(evs), call("drv", 1, 5, fault("restart", Reset, "")), ret("drv", 1, 6, Event{}))
	if r, _ := check(t, restart...); len(r.Failures) != 2 {
		t.Fatalf("a restart excused a smaller token: %v", r.Failures)
	}
	// The server's clock going back does, for acquires called before its
	// window ends.
	back := append(slices.Clone(evs), call("drv", 1, 5, fault("clock back", ClockBack, "")), ret("drv", 1, 10, Event{}))
	if r, _ := check(t, back...); len(r.Failures) != 0 || row(t, r, "clock back", Lock).In != 1 {
		t.Fatalf("failures %v, rows %+v", r.Failures, r.Rows)
	}
	over := append(slices.Clone(evs), call("drv", 1, 5, fault("clock back", ClockBack, "")), ret("drv", 1, 9, Event{}))
	if r, _ := check(t, over...); len(r.Failures) != 2 {
		t.Fatalf("a clock back excused a token asked for after its window: %v", r.Failures)
	}
}

func TestCheck_lockKilledHolderStopsBelievingAtDeath(t *testing.T) {
	r, _ := check(t,
		call("a", 1, 0, acquire("k")), ret("a", 1, 1, granted(1)),
		call("drv", 1, 5, fault("kill -9", Kill, "a")), ret("drv", 1, 5, Event{}),
		call("b", 1, 2, acquire("k")), ret("b", 1, 30, granted(2)),
		call("b", 2, 31, release(1)), ret("b", 2, 32, Event{}),
	)
	if len(r.Failures) != 0 {
		t.Fatalf("failures: %v", r.Failures)
	}
}

func TestCheck_lockUnacknowledgedReleaseMayTakeEffectLater(t *testing.T) {
	r, _ := check(t,
		call("a", 1, 0, acquire("k")), ret("a", 1, 1, granted(1)),
		call("a", 2, 2, release(1)), ret("a", 2, 40, Event{Err: "unavailable"}),
		call("b", 1, 3, acquire("k")), ret("b", 1, 30, granted(2)),
		call("b", 2, 31, release(1)), ret("b", 2, 32, Event{}),
	)
	if len(r.Failures) != 0 {
		t.Fatalf("failures: %v", r.Failures)
	}
}

func TestCheck_semaphoreLimit(t *testing.T) {
	sem := func(lease int64) Event { return Event{Kind: Semaphore, Op: Acquire, Key: "s", Limit: 2} }
	rel := func(lease int64) Event { return Event{Kind: Semaphore, Op: Release, Lease: lease} }
	evs := []ev{
		call("a", 1, 0, sem(0)), ret("a", 1, 1, Event{}),
		call("b", 1, 0, sem(0)), ret("b", 1, 1, Event{}),
		call("a", 2, 10, rel(1)), ret("a", 2, 11, Event{}),
		call("c", 1, 9, sem(0)), ret("c", 1, 12, Event{}), // after a's release: fine
		call("b", 2, 20, rel(1)), ret("b", 2, 21, Event{}),
		call("c", 2, 20, rel(1)), ret("c", 2, 21, Event{}),
	}
	if r, _ := check(t, evs...); len(r.Failures) != 0 {
		t.Fatalf("failures: %v", r.Failures)
	}
	evs = append(evs, call("d", 1, 2, sem(0)), ret("d", 1, 3, Event{}), call("d", 2, 4, rel(1)), ret("d", 2, 5, Event{}))
	r, _ := check(t, evs...)
	if len(r.Failures) != 2 || row(t, r, "no fault", Semaphore).Out != 1 {
		t.Fatalf("a third holder passed: %v %+v", r.Failures, r.Rows)
	}
}

func TestCheck_semaphoreLostLeaseEndsItsHold(t *testing.T) {
	r, _ := check(t,
		call("drv", 1, 2, fault("network cut", None, "")), ret("drv", 1, 4, Event{}), // why the lease was lost
		call("a", 1, 0, Event{Kind: Semaphore, Op: Acquire, Key: "s", Limit: 1}), ret("a", 1, 1, Event{}),
		call("a", 2, 5, Event{Kind: Semaphore, Op: Lost, Lease: 1}),
		call("b", 1, 2, Event{Kind: Semaphore, Op: Acquire, Key: "s", Limit: 1}), ret("b", 1, 6, Event{}),
		call("b", 2, 7, Event{Kind: Semaphore, Op: Release, Lease: 1}), ret("b", 2, 8, Event{}),
	)
	if len(r.Failures) != 0 {
		t.Fatalf("failures: %v", r.Failures)
	}
}

func fanCall() Event            { return Event{Kind: Fanout, Op: Call, Key: "f"} }
func fanRun(v string) Event     { return Event{Kind: Fanout, Op: Run, Key: "f", Value: v} }
func outcome(v string) Event    { return Event{Value: v} }
func runIn(key, v string) Event { return Event{Kind: Fanout, Op: Run, Key: key, Value: v} }
func callIn(key string) Event   { return Event{Kind: Fanout, Op: Call, Key: key} }

func TestCheck_fanoutCallersGetAPublishedOutcome(t *testing.T) {
	r, _ := check(t,
		call("a", 1, 0, fanCall()), call("a", 2, 5, fanRun("v1")), ret("a", 1, 7, outcome("v1")),
		call("b", 1, 1, fanCall()), ret("b", 1, 8, outcome("v1")),
		call("c", 1, 9, fanCall()), ret("c", 1, 10, outcome("v1")), // within ResultTTL
		call("drv", 1, 11, fault("network cut", None, "")), ret("drv", 1, 12, Event{}),
		call("c", 2, 11, fanCall()), ret("c", 2, 12, Event{Err: "timeout"}), // no outcome: not checked
	)
	if len(r.Failures) != 0 {
		t.Fatalf("failures: %v", r.Failures)
	}
}

func TestCheck_fanoutOutcomeOfAnotherKeyFails(t *testing.T) {
	r, _ := check(t,
		call("a", 1, 0, callIn("g")), call("a", 2, 5, runIn("g", "vg")), ret("a", 1, 7, outcome("vg")),
		call("b", 1, 1, fanCall()), call("b", 2, 5, fanRun("vf")), ret("b", 1, 8, outcome("vg")),
	)
	if len(r.Failures) != 2 || row(t, r, "no fault", Fanout).Out != 1 {
		t.Fatalf("a foreign outcome passed: %v", r.Failures)
	}
}

func TestCheck_fanoutSupersededOutcomeFails(t *testing.T) {
	evs := []ev{
		call("a", 1, 0, fanCall()), call("a", 2, 1, fanRun("v1")), ret("a", 1, 2, outcome("v1")),
		call("a", 3, 3, fanCall()), call("a", 4, 4, fanRun("v2")), ret("a", 3, 5, outcome("v2")),
		// b calls after a saw v2, and gets v1.
		call("b", 1, 6, fanCall()), ret("b", 1, 7, outcome("v1")),
	}
	r, _ := check(t, evs...)
	if len(r.Failures) != 1 {
		t.Fatalf("a superseded outcome passed: %v", r.Failures)
	}
	// A failover that lost the newer result in between excuses it.
	evs = append(evs, call("drv", 1, 5, fault("failover", Reset, "")), ret("drv", 1, 6, Event{}))
	if r, _ := check(t, evs...); len(r.Failures) != 0 {
		t.Fatalf("failures: %v", r.Failures)
	}
}

// The timeline lists the driver's windows and only counts those a process
// opened on itself (a soaker loses a reply about once a second).
func TestCheck_timelineCountsAProcessesOwnWindows(t *testing.T) {
	r, _ := check(t,
		call("drv", 1, 2, fault("SIGSTOP", Pause, "a")), ret("drv", 1, 20, Event{}),
		call("a", 1, 30, fault("reply lost", None, "a")), ret("a", 1, 31, Event{}),
		call("a", 2, 40, fault("reply lost", None, "a")), ret("a", 2, 41, Event{}),
		call("a", 3, 50, acquire("k")), ret("a", 3, 51, granted(1)),
	)
	if want := "fault windows:\n\t+0.000s to +0.018s: SIGSTOP (a)\n\tand 2 windows processes opened on themselves"; r.Timeline != want {
		t.Fatalf("timeline %q, want %q", r.Timeline, want)
	}
}
