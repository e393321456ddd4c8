// Package history records what the processes of a soak did, as
// invoke/complete events on one clock, and checks the record against
// sequential models of dlock's promises with porcupine (a linearizability
// checker): a lock's believed holders never overlap and its fencing tokens
// grow with real time; a semaphore never has more believed holders than its
// limit; every fanout caller gets an outcome that a run of its key
// published, and not one superseded before it called.
//
// Each process appends its events to its own file as they happen (one
// write per event, so a process killed with SIGKILL loses nothing it
// finished); stamps come from CLOCK_MONOTONIC, which every process on the
// machine shares. The faults are recorded as windows, by the soak's driver
// or by the process that injects one on itself (a lost reply).
//
// Check reads the files back and runs porcupine per key: holders (a
// holder's belief starts at its acquire's return and ends when it calls
// Release or sees Done closed), tokens (a grant happens during its
// acquire's call), fanout outcomes. Where the strict check fails it checks
// again with the documented windows excused, each as narrowly as its fault
// allows: a Pause excuses the leases its process believed before it
// resumed, from the pause on until Options.Grace after it (a lapsed lease
// is noticed at once on resuming; one believed longer is checked again); a
// Reset (a restart, failover, split brain or forward clock jump) excuses
// the leases believed during it or asked for in it, until one lease and
// Options.Grace after it (a holder whose key the server lost learns it at
// its next renewal); neither excuses tokens. A ClockBack excuses smaller
// tokens for acquires called before its window ends. A Late window
// excuses nothing and adds a rule: no grant comes back as held through
// replies held longer than its lease. A direct sweep
// counts the violations in and out of the windows (and alone checks a key
// over Options.MaxOps operations). It also checks that a job's error
// reaches only callers that called before the run published it, and that
// outside the windows (and Options.Settle after each) no operation fails
// for any reason but contention.
package history

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Now is CLOCK_MONOTONIC in nanoseconds: one clock for every process on
// the machine (Go's own monotonic readings start at each process's birth).
func Now() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

// Kinds of objects, each with its model.
const (
	Lock      = "lock"
	Semaphore = "sem"
	Fanout    = "fanout"
	Fault     = "fault"
)

// Operations.
const (
	Acquire = "acquire" // lock, sem: Key, Limit (sem); returns Token or Err; belief starts at its return
	Release = "release" // lock, sem: Lease (the acquire's ID); the holder stops believing at its call
	Lost    = "lost"    // lock, sem: Lease; Done was seen closed (call only)
	Lead    = "lead"    // fanout: a job started, at Since (call only); its generation led the key from before then
	Run     = "run"     // fanout: a job that started at Since returned Value (call only: it may be published later, or never)
	Call    = "call"    // fanout: a caller; returns Value, or Err when it got no outcome
)

// Effects of a fault window on the models.
const (
	// Pause: Target was stopped (SIGSTOP) at the window's start and
	// continued at its end (stamp the end before SIGCONT): its leases may
	// have lapsed meanwhile.
	Pause = "pause"
	Kill  = "kill" // Target died: its holders stop believing
	// Reset: the server may have lost acknowledged writes or dropped keys
	// early (frees believed holders for a lease after it; tokens are not
	// excused).
	Reset = "reset"
	// ClockBack: the server's clock went back; until it is past its old
	// readings again (the window's end), a key that expires and is taken
	// afresh may get a smaller fencing token (tokens are its clock in µs).
	ClockBack = "clock back"
	// Late: Target's replies were held Delay ms each through the window
	// (its link was slowed before the window began and heals after it
	// ends). A grant that came back at least Delay into the window came in
	// a reply the server sent at least Delay earlier: a lease no longer
	// than Delay had lapsed before its acquire returned, and none may be
	// returned as held (P19).
	Late = "late replies"
	None = "" // no effect on the models (network faults): windows for the report only
)

// An Event is one line of a history file: the call of an operation (Ret
// false) or its return (Ret true, with the same Proc and ID).
type Event struct {
	Proc  string `json:"p"`
	ID    int64  `json:"id"`
	Ret   bool   `json:"r,omitempty"`
	T     int64  `json:"t"`
	Kind  string `json:"k,omitempty"`
	Op    string `json:"o,omitempty"`
	Key   string `json:"key,omitempty"`
	Lease int64  `json:"l,omitempty"`   // release, lost: the acquire's ID
	Limit int    `json:"lim,omitempty"` // semaphore acquire
	TTL   int64  `json:"ttl,omitempty"` // lock, sem acquire: the lease asked for, in ms
	Token int64  `json:"tok,omitempty"` // lock acquire's return
	Value string `json:"v,omitempty"`   // fanout: run's and caller's outcome
	Since int64  `json:"s,omitempty"`   // fanout lead and run: when the job started (Now)
	// JobErr: fanout run, and a caller's return: Value is a job's error
	// (it reaches only the callers of its run).
	JobErr bool   `json:"je,omitempty"`
	Err    string `json:"e,omitempty"` // return: the operation failed (no outcome)

	// Fault windows (Kind Fault, Op the fault's name): Effect, and the
	// process it hit, if one (Pause, Kill; a process's own fault, such as a
	// lost reply, names the process itself).
	Effect string `json:"eff,omitempty"`
	Target string `json:"tgt,omitempty"`
	Delay  int64  `json:"delay,omitempty"` // Late: how long each reply was held, in ms
}

// A Recorder appends one process's events to its file.
type Recorder struct {
	proc string

	mu   sync.Mutex // protects the fields below
	f    *os.File
	next int64
	err  error // the first write error
}

// Create opens the history file path for the process proc, which names
// the process in every event and must be unique within the soak.
func Create(path, proc string) (*Recorder, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &Recorder{proc: proc, f: f}, nil
}

// Call records the call of an operation, stamped now, and returns its ID.
//
// Each stamp is the one that keeps the checker strict and true when
// another goroutine's write(2) stalls (the kernel throttles writers when a
// build fills the page cache): the end of a holder's belief (Release,
// Lost) is stamped when the holder stopped believing, before the wait for
// the file, or a stalled write would stretch its belief over another's
// grant; the start of anything else (an acquire asked for, a job's run, a
// window a process opens on itself) is stamped after the wait, when it
// can begin, or an early stamp would let it count as asked for before a
// window it missed. (Return stamps before the wait: the operation has
// returned.)
func (r *Recorder) Call(e Event) int64 {
	if e.Op == Release || e.Op == Lost {
		return r.CallAt(e, Now())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.callLocked(e, Now())
}

// CallAt is Call stamped t (Now, read earlier): the ends of a multi-lock's
// beliefs, one per key, share the moment its holder stopped.
func (r *Recorder) CallAt(e Event, t int64) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.callLocked(e, t)
}

func (r *Recorder) callLocked(e Event, t int64) int64 {
	r.next++
	e.Proc, e.ID, e.Ret, e.T = r.proc, r.next, false, t
	r.write(e)
	return e.ID
}

// Return records the return of the operation id, stamped now, before it
// waits for the file (see Call); e carries its outputs (Token, Value,
// Err).
func (r *Recorder) Return(id int64, e Event) { r.ReturnAt(id, e, Now()) }

// ReturnAt is Return stamped t: a multi-lock's grants, one per key, share
// the moment it returned.
func (r *Recorder) ReturnAt(id int64, e Event, t int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e.Proc, e.ID, e.Ret, e.T = r.proc, id, true, t
	r.write(e)
}

// write is one write(2) per event: a SIGKILL later loses nothing.
func (r *Recorder) write(e Event) {
	b, err := json.Marshal(e)
	if err == nil {
		_, err = r.f.Write(append(b, '\n'))
	}
	if err != nil && r.err == nil {
		r.err = err
	}
}

// Close closes the file and returns the first error any write met.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.f.Close(); err != nil && r.err == nil {
		r.err = err
	}
	if r.err != nil {
		return fmt.Errorf("history of %s: %w", r.proc, r.err)
	}
	return nil
}
