package history

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A goroutine that records while another's write holds the file is
// stamped when it called, not when the file was free: a holder that saw
// Done closed stopped believing then. (The hold stands for a write(2) the
// kernel throttled; it lasts a second so that the recording goroutine,
// started before it, has surely taken its stamp.)
func TestRecorder_stampsWhenCalledNotWhenTheFileIsFree(t *testing.T) {
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
		r.Call(Event{Kind: Lock, Op: Lost, Lease: id})
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
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lost *Event
	for sc := bufio.NewScanner(f); sc.Scan(); {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		if e.Op == Lost {
			lost = &e
		}
	}
	if lost == nil {
		t.Fatal("the loss was not recorded")
	}
	if lost.T >= freed {
		t.Fatalf("the loss was stamped %v after the file was free; want before it", time.Duration(lost.T-freed))
	}
}
