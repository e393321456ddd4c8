package dlockrt

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/history"
	"github.com/dlock-go/dlock/internal/redistest"
)

// The soaks' checker, end to end on real runs: a server clock jump past a
// held lock's lease expires its key, a second client takes the lock while
// the first still believes it holds it, and the recorded history shows it.
// Recorded as a window (the soak records every fault it injects), the
// overlap is excused and counted; without the window it is a violation,
// with porcupine's visualization written to the file the failure names.
func TestSoak_checkerSeesAClockJumpOverlap(t *testing.T) {
	srv := redistest.StartFakeClockServer(t)
	dir := t.TempDir()
	recorder := func(name string) *history.Recorder {
		r, err := history.Create(filepath.Join(dir, name+".jsonl"), name)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	ra, rb, drv := recorder("a"), recorder("b"), recorder("driver")
	a := newClient(t, srv.Client(), &Options{TTL: 5 * time.Second}) // renewed 1.7s in
	b := newClient(t, srv.Client(), nil)
	k := key(t, "jump")
	hold := func(rec *history.Recorder, c *Client) (*Lock, int64) {
		op := rec.Call(history.Event{Kind: history.Lock, Op: history.Acquire, Key: k})
		l, err := c.Once(t.Context(), k)
		if err != nil {
			t.Fatal(err)
		}
		rec.Return(op, history.Event{Token: l.Token()})
		return l, op
	}
	release := func(rec *history.Recorder, l *Lock, lease int64) {
		op := rec.Call(history.Event{Kind: history.Lock, Op: history.Release, Lease: lease})
		err := l.Release(t.Context())
		rec.Return(op, history.Event{Err: errText(err)})
	}
	la, leaseA := hold(ra, a)
	w := drv.Call(history.Event{Kind: history.Fault, Op: "clock jump", Effect: history.Reset})
	srv.JumpClock(10 * time.Second)
	drv.Return(w, history.Event{})
	lb, leaseB := hold(rb, b)
	select {
	case <-la.Done():
		t.Fatal("the first holder was told before the second got the lock; nothing overlapped")
	default:
	}
	release(rb, lb, leaseB)
	release(ra, la, leaseA)
	for _, r := range []*history.Recorder{ra, rb, drv} {
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}

	rep, err := history.Check(dir, history.Options{HTMLDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + rep.Markdown("standalone"))
	if len(rep.Failures) != 0 {
		t.Fatalf("the overlap inside the clock jump's window failed the check: %v", rep.Failures)
	}
	counted := false
	for _, r := range rep.Rows {
		if r.Fault == "clock jump" && strings.HasPrefix(r.Promise, "lock") {
			counted = r.In == 1 && r.Out == 0 && r.Verdict == "linearizable outside the windows"
		}
	}
	if !counted {
		t.Fatal("the overlap was not counted in the clock jump's window")
	}

	os.Remove(filepath.Join(dir, "driver.jsonl"))
	rep, err = history.Check(dir, history.Options{HTMLDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Failures) == 0 {
		t.Fatal("without its window the overlap passed")
	}
	html, _ := filepath.Glob(filepath.Join(dir, "history-lock-holders-*.html"))
	if len(html) != 1 || !strings.Contains(rep.Failures[0], html[0]) {
		t.Fatalf("failure %q; visualizations %v", rep.Failures[0], html)
	}
	if st, err := os.Stat(html[0]); err != nil || st.Size() == 0 {
		t.Fatalf("visualization: %v", err)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
