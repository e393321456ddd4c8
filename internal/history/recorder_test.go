package history

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// While another goroutine's write holds the file, an event is stamped so
// that the checker stays strict and true: the end of a belief (a holder
// that saw Done closed) when it was called, not when the file was free; a
// return too; the start of an operation (an acquire asked for) when it
// can begin, after the wait. (The hold stands for a write(2) the kernel
// throttled; it lasts a second so that the recording goroutine, started
// before it, has surely called by its end.)
func TestRecorder_stampsWhenCalledNotWhenTheFileIsFree(t *testing.T) {
	for _, tc := range []struct {
		name        string
		record      func(r *Recorder, lease int64)
		op          string
		beforeWrite bool // stamped before the file was free
	}{
		{"end of a belief", func(r *Recorder, l int64) { r.Call(Event{Kind: Lock, Op: Lost, Lease: l}) }, Lost, true},
		{"return", func(r *Recorder, l int64) { r.Return(l, Event{Token: 7}) }, "", true},
		{"start of an acquire", func(r *Recorder, _ int64) { r.Call(Event{Kind: Lock, Op: Acquire, Key: "k2"}) }, Acquire, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "p.jsonl")
			r, err := Create(path, "p")
			if err != nil {
				t.Fatal(err)
			}
			id := r.Call(Event{Kind: Lock, Op: Acquire, Key: "k"})
			r.mu.Lock() // another goroutine's write, stalled
			started, done := make(chan struct{}), make(chan struct{})
			go func() {
				close(started)
				tc.record(r, id)
				close(done)
			}()
			<-started
			time.Sleep(time.Second)
			freed := Now()
			r.mu.Unlock()
			<-done
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			e := lastEvent(t, path)
			if e.Op != tc.op || e.Ret != (tc.op == "") {
				t.Fatalf("last event %+v; want op %q", e, tc.op)
			}
			if before := e.T < freed; before != tc.beforeWrite {
				t.Fatalf("stamped %v from the moment the file was free; want before it: %v", time.Duration(e.T-freed), tc.beforeWrite)
			}
		})
	}
}

func lastEvent(t *testing.T, path string) Event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var last Event
	for sc := bufio.NewScanner(f); sc.Scan(); {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		last = e
	}
	return last
}
