package dlockrt

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// releaseGate holds every lock_release script (alone or in a pipeline)
// until open is closed, and says on started when one is held.
type releaseGate struct {
	open    chan struct{}
	started chan struct{}
}

func newReleaseGate() *releaseGate {
	return &releaseGate{open: make(chan struct{}), started: make(chan struct{}, 16)}
}

func (g *releaseGate) hook() cmdsHook {
	return func(cmds []redis.Cmder) error {
		for _, c := range cmds {
			if a := c.Args(); len(a) > 1 && (a[1] == scriptLockRelease.Hash() || a[1] == lockReleaseSrc) {
				g.started <- struct{}{}
				<-g.open
				break
			}
		}
		return nil
	}
}

// A renewal that finds the key taken by another ends the lease at once:
// Done closes, and Err says it was lost to another holder. The holder is
// told before what is left of the lease is given back: another holds the
// key, so the holder must stop at once, not a round trip later (the
// release of a multi-lock's other keys may take a while on a slow link).
func TestLock_renewalFindingTheKeyTakenEndsTheLease(t *testing.T) {
	rdb := newRedis(t)
	gate := newReleaseGate()
	ardb := newRedis(t)
	ardb.AddHook(gate.hook())
	a, b := newClient(t, ardb, nil), newClient(t, newRedis(t), nil)
	defer close(gate.open) // before the clients close (defers run last in, first out)
	k := key(t, "k")
	la, err := a.Once(t.Context(), k, WithTTL(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	rdb.Del(bg(), lockKey(mustTag(t, a, k))) // lost, as in a failover that lost the write
	lb, err := b.Once(t.Context(), k)
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Release(bg())
	recv(t, la.Done(), 2*time.Second, "the first holder's lease to end at its next renewal, its release still held")
	if err := la.Err(); !errors.Is(err, ErrLost) || !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Err = %v; want ErrLost and ErrNotHeld", err)
	}
	recv(t, gate.started, 2*time.Second, "the release of what is left of the lease")
}

// A lease is lost once: when two paths find it lost at once (the clock's
// step at the loss point and an Extend that ran out of time, say), the
// Observer and the log hear of it once, and Err is the first verdict.
func TestLock_lostOnceWhenTwoPathsFindItLost(t *testing.T) {
	lost := &lossTimes{ch: make(chan time.Time, 2)}
	c := newClient(t, newRedis(t), &Options{Observer: lost})
	l, err := c.Once(t.Context(), key(t, "k"), WithTTL(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	first := fmt.Errorf("%w: first", ErrLost)
	l.lease.lose(first)
	l.lease.lose(fmt.Errorf("%w: second", ErrLost))
	if n := len(lost.ch); n != 1 {
		t.Fatalf("Lost reported %d times; want once", n)
	}
	if err := l.Err(); err != first {
		t.Fatalf("Err = %v; want the first verdict", err)
	}
}
