package dlockrt

import "sync"

// The client's mutexes, in the one order they nest: a goroutine that holds
// one may take only those below it, never one above or another of its
// rank. Each is declared as lockedBy[its rank]; a build with the tag
// dlock_lockorder checks every Lock against this order and panics on a
// violation (make test runs the runtime's tests so).
//
//	fmuRank       Client.fmu        the flights map
//	flightMuRank  flight.mu         one flight: its state, callers, claim and Job
//	renewRank     lease.emu         a lease's renewals (held across a Redis call)
//	leaseRank     lease.mu          a lease's deadline and end
//	clockRank     leaseClock.mu     the clock's queue of leases
//	tmuRank       Client.tmu        Lock's turnstiles
//	muxRank       mux.mu            the subscriptions
//	clientMuRank  Client.mu         the leases Close releases, background goroutines
//	dialRank      dialWatch.mu      the subscription connection's server
type (
	fmuRank      struct{}
	flightMuRank struct{}
	renewRank    struct{}
	leaseRank    struct{}
	clockRank    struct{}
	tmuRank      struct{}
	muxRank      struct{}
	clientMuRank struct{}
	dialRank     struct{}
)

func (fmuRank) rank() int      { return 1 }
func (flightMuRank) rank() int { return 2 }
func (renewRank) rank() int    { return 3 }
func (leaseRank) rank() int    { return 4 }
func (clockRank) rank() int    { return 5 }
func (tmuRank) rank() int      { return 6 }
func (muxRank) rank() int      { return 7 }
func (clientMuRank) rank() int { return 8 }
func (dialRank) rank() int     { return 9 }

// A lockRank is the place of a mutex in the order above.
type lockRank interface{ rank() int }

// lockedBy is a mutex of rank R. Without the dlock_lockorder tag it is a
// sync.Mutex and nothing more.
type lockedBy[R lockRank] struct{ m sync.Mutex }

func (l *lockedBy[R]) Lock() {
	var r R
	willLock(r.rank())
	l.m.Lock()
}

func (l *lockedBy[R]) Unlock() {
	var r R
	unlocked(r.rank())
	l.m.Unlock()
}
