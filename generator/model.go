package generator

import (
	"strconv"
	"time"
)

// The typed form of a directive: what the checker decides once and the
// emitter reads, so that no emitter code parses an argument or compares a
// verb's spelling.

// verb is what a directive asks for.
type verb int

const (
	verbFanout verb = iota + 1
	verbOnce
	verbSemaphore
)

var verbNames = map[string]verb{"fanout": verbFanout, "once": verbOnce, "semaphore": verbSemaphore}

func (v verb) String() string {
	for name, w := range verbNames {
		if w == v {
			return name
		}
	}
	return "verb(" + strconv.Itoa(int(v)) + ")"
}

// settings are a directive's typed arguments (their values checked by
// directive.checkValues).
type settings struct {
	ttl     time.Duration // the lease; 0: the client's default
	timeout time.Duration // how long a fanout's callers wait; 0: the runtime's default
	wait    time.Duration // how long to wait for the lock or permit
	waitSet bool          // wait= was given (a semaphore without it waits as long as ctx)
	limit   int           // a semaphore's permits
}

// typed returns the directive's verb and settings.
func (d *directive) typed() (verb, settings) {
	s := settings{ttl: d.duration("ttl"), timeout: d.duration("timeout"), wait: d.duration("wait"), waitSet: d.has("wait")}
	if a, ok := d.Args["limit"]; ok {
		s.limit, _ = strconv.Atoi(a.Value)
	}
	return verbNames[d.Verb], s
}
