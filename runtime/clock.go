package dlockrt

import (
	"container/heap"
	"time"
)

// leaseClock wakes every lease of a client when its next step is due — a
// watchdog renewal, or the loss of a lease nobody renews — with one timer
// for all of them, rather than a timer and a goroutine per lease (which
// cost a scheduler wake-up on every acquisition). Leases of one TTL come
// due in the order they were taken, so a new one rarely moves the timer:
// the timer stays armed for the earliest step it was set for, and when it
// fires with nothing due it is armed for the next one.
type leaseClock struct {
	mu      lockedBy[clockRank] // protects the fields below, and at and idx of the leases in q
	q       leaseQueue
	timer   *time.Timer
	armed   time.Time // when timer fires; zero when it is not armed
	stopped bool
}

func newLeaseClock() *leaseClock {
	k := &leaseClock{}
	k.timer = time.AfterFunc(time.Hour, k.tick)
	k.timer.Stop()
	return k
}

// schedule wakes l at at (replacing any earlier schedule of l).
func (k *leaseClock) schedule(l *lease, at time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		return
	}
	l.at = at
	if l.idx < 0 {
		heap.Push(&k.q, l)
	} else {
		heap.Fix(&k.q, l.idx)
	}
	if k.armed.IsZero() || at.Before(k.armed) {
		k.armLocked(at)
	}
}

// remove forgets l's schedule. The timer is left as it is: firing with
// nothing due only arms it again.
func (k *leaseClock) remove(l *lease) {
	k.mu.Lock()
	if l.idx >= 0 {
		heap.Remove(&k.q, l.idx)
	}
	k.mu.Unlock()
}

func (k *leaseClock) armLocked(at time.Time) {
	k.armed = at
	k.timer.Reset(time.Until(at))
}

// Renewals that fall due together go to Redis together: when the clock
// wakes, it also renews the watchdog leases whose renewal is due within
// renewEarly of now (their renewal then comes a little before a third of
// their lease, which only makes them safer), so that the renewals of
// leases taken at about the same time share pipelines (pipeline.go) and
// stay in step afterwards. Steps that end a lease are never taken early.
const maxRenewEarly = 250 * time.Millisecond

// renewEarly is how much earlier than due a lease of ttl may be renewed.
func renewEarly(ttl time.Duration) time.Duration { return min(ttl/10, maxRenewEarly) }

// tick wakes the leases that are due and arms the timer for the next.
func (k *leaseClock) tick() {
	now := time.Now()
	var due, notYet []*lease
	k.mu.Lock()
	k.armed = time.Time{}
	for len(k.q) > 0 && !k.q[0].at.After(now.Add(maxRenewEarly)) {
		l := heap.Pop(&k.q).(*lease)
		if !l.at.After(now) || l.watchdog && !l.at.After(now.Add(renewEarly(l.ttl))) {
			due = append(due, l)
		} else {
			notYet = append(notYet, l)
		}
	}
	for _, l := range notYet {
		heap.Push(&k.q, l)
	}
	if len(k.q) > 0 && !k.stopped {
		k.armLocked(k.q[0].at)
	}
	k.mu.Unlock()
	for _, l := range due {
		l.due()
	}
}

// stop stops the clock. Renewals in flight run on Client.goTracked
// goroutines, which Close waits for.
func (k *leaseClock) stop() {
	k.mu.Lock()
	k.stopped = true
	k.timer.Stop()
	k.mu.Unlock()
}

// leaseQueue is a min-heap of leases by wake time.
type leaseQueue []*lease

func (q leaseQueue) Len() int           { return len(q) }
func (q leaseQueue) Less(i, j int) bool { return q[i].at.Before(q[j].at) }
func (q leaseQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].idx, q[j].idx = i, j
}
func (q *leaseQueue) Push(x any) {
	l := x.(*lease)
	l.idx = len(*q)
	*q = append(*q, l)
}
func (q *leaseQueue) Pop() any {
	old := *q
	l := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	l.idx = -1
	return l
}
