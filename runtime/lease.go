package dlockrt

import (
	"context"
	"fmt"
	"time"
)

// lease is the local side of something held in Redis for a while: its
// deadline on this process's monotonic clock, the watchdog that renews it,
// and the Done channel that tells the holder when it ended.
//
// The deadline is computed from when the acquire or extend was sent, so it
// never lies past the server's own expiry (barring clock-rate differences).
// The holder is told the lease is lost a little before that deadline
// (lossMargin), whether or not Redis ever answers again.
type lease struct {
	c        *Client
	kind     Kind            // for the Observer
	key      string          // the (first) user key, for the Observer
	called   time.Time       // when the caller asked for it, for the Observer
	acquired time.Time       // when it was granted
	obsCtx   context.Context // the acquirer's context, for Observer calls off its path (values only)
	ttl      time.Duration
	watchdog bool
	extend   func(ctx context.Context, ttl time.Duration) (bool, error) // one attempt, all or nothing
	release  func(ctx context.Context) (released, total int, err error)

	// emu serializes renewals (the watchdog's and Extend's) with the
	// deadline each sets, so a stale renewal never moves the local
	// deadline past the server's expiry.
	emu lockedBy[renewRank]

	mu       lockedBy[leaseRank] // protects the fields below
	deadline time.Time           // end of the current lease on the local clock
	ended    bool                // lost, released or closed: done is closed
	released bool                // Release or Close ran the release script
	err      error               // why it ended
	done     chan struct{}
	stop     chan struct{}       // closed when the lease ends: stops a renewal's retries
	onEnd    map[int]func(error) // called once when the lease ends (Context)
	nextEnd  int

	at  time.Time // when the client's leaseClock wakes it next; protected by the clock
	idx int       // its place in the clock's queue, -1 when not scheduled; protected by the clock
}

// lossMargin is how long before the local deadline a lease whose renewal
// was not confirmed is declared lost.
func lossMargin(ttl time.Duration) time.Duration { return min(ttl/20, 50*time.Millisecond) }

// maxLateGrants is how many late grants in a row an acquisition takes
// before it gives up (it asks again after each but the last; see lapsed).
const maxLateGrants = 3

// lapsed reports whether a lease of ttl whose acquire was sent at sent
// would already be declared lost: its reply came too late (the process
// was paused, the network held the reply). Such a grant is never returned
// (its caller would hold a lock that another may already have, with Done
// closing only after it returned): it is asked for again, until
// maxLateGrants late grants in a row, then given back with this error.
func lapsed(sent time.Time, ttl time.Duration) error {
	if time.Now().Before(sent.Add(ttl - lossMargin(ttl))) {
		return nil
	}
	return fmt.Errorf("%w: the grant arrived %v after it was asked for, past its %v lease", ErrUnavailable,
		time.Since(sent).Round(time.Millisecond), ttl)
}

// start begins tracking a lease acquired with a command sent at sent. It
// reports false, and tracks nothing, when the client is closing: then the
// caller must release what it acquired.
func (l *lease) start(ctx context.Context, sent time.Time) bool {
	if l.called.IsZero() {
		l.called = sent
	}
	l.acquired = time.Now()
	l.obsCtx = ctx
	l.deadline = sent.Add(l.ttl)
	l.done = make(chan struct{})
	l.stop = make(chan struct{})
	l.idx = -1
	if !l.c.track(l) {
		return false
	}
	l.c.opts.Observer.Acquired(ctx, AcquireEvent{Kind: l.kind, Key: l.key, Wait: l.acquired.Sub(l.called)})
	l.c.clock.schedule(l, l.wakeAt(l.deadline))
	return true
}

// wakeAt is when a lease ending at deadline needs its next step: the
// watchdog renews a third of the way into it; without one, it is lost
// a little before the deadline.
func (l *lease) wakeAt(deadline time.Time) time.Time {
	if l.watchdog {
		return deadline.Add(-l.ttl * 2 / 3)
	}
	return deadline.Add(-lossMargin(l.ttl))
}

// due is called by the client's clock when the lease's step is due.
func (l *lease) due() {
	l.mu.Lock()
	ended, deadline := l.ended, l.deadline
	l.mu.Unlock()
	if ended {
		return
	}
	lossAt := deadline.Add(-lossMargin(l.ttl))
	switch {
	case l.watchdog:
		l.c.goTracked(func() { l.renew(lossAt) })
	case !time.Now().Before(lossAt):
		l.lose(fmt.Errorf("%w: lease of %v expired without extension", ErrLost, l.ttl))
	default: // extended meanwhile
		l.c.clock.schedule(l, lossAt)
	}
}

// renew is one renewal by the watchdog, retried until the lease would be
// lost at lossAt.
func (l *lease) renew(lossAt time.Time) {
	var lastErr error
	for {
		ctx, cancel := context.WithDeadline(patient(l.c.bg), lossAt)
		l.emu.Lock()
		sent := time.Now()
		ok, err := l.extend(ctx, l.ttl)
		if err == nil && ok {
			l.renewed(sent, l.ttl)
		}
		l.emu.Unlock()
		cancel()
		select {
		case <-l.stop:
			return
		default:
		}
		if err == nil && ok {
			l.c.opts.Observer.Extended(context.WithoutCancel(l.obsCtx), ExtendEvent{Kind: l.kind, Key: l.key})
			return
		}
		if err == nil {
			// Not held any more (for a multi-lock: some of it): tell the
			// holder at once, for another may hold it already, then give
			// back what is still ours.
			l.lose(fmt.Errorf("%w: %w: another holder has it", ErrLost, ErrNotHeld))
			ctx, cancel := l.c.detached(l.obsCtx)
			l.release(ctx)
			cancel()
			return
		}
		lastErr = err
		if !time.Now().Before(lossAt) {
			l.lose(fmt.Errorf("%w: not renewed before the lease ended: %w", ErrLost, lastErr))
			return
		}
		t := time.NewTimer(time.Until(earliest(time.Now().Add(l.ttl/10), lossAt)))
		select {
		case <-t.C:
		case <-l.stop:
			t.Stop()
			return
		}
	}
}

// renewed records a renewal for ttl sent at sent (the last one to reach
// Redis: callers hold emu) and schedules the next step.
func (l *lease) renewed(sent time.Time, ttl time.Duration) {
	l.mu.Lock()
	l.deadline = sent.Add(ttl)
	ended, deadline := l.ended, l.deadline
	l.mu.Unlock()
	if !ended {
		l.c.clock.schedule(l, l.wakeAt(deadline))
	}
}

// finish ends the lease with err. With released (a Release, Close or
// completion, which then runs the release script) it reports false if a
// release ran before, so that the script runs once even after a loss;
// else (a loss) it reports false if the lease had ended before, so that a
// loss found by two paths at once is told once.
func (l *lease) finish(err error, released bool) bool {
	l.mu.Lock()
	if released {
		if l.released {
			l.mu.Unlock()
			return false
		}
		l.released = true
	}
	ends := !l.ended
	var onEnd map[int]func(error)
	if ends {
		l.ended = true
		l.err = err
		close(l.done)
		close(l.stop)
		l.c.clock.remove(l)
		onEnd, l.onEnd = l.onEnd, nil
	}
	l.mu.Unlock()
	for _, f := range onEnd { // outside the lock: a callback may act on the lease
		f(err)
	}
	return released || ends
}

// afterEnd calls f with the lease's error when it ends (at once if it has
// ended); stop unregisters f. It costs no goroutine.
func (l *lease) afterEnd(f func(error)) (stop func()) {
	l.mu.Lock()
	if l.ended {
		err := l.err
		l.mu.Unlock()
		f(err)
		return func() {}
	}
	if l.onEnd == nil {
		l.onEnd = map[int]func(error){}
	}
	id := l.nextEnd
	l.nextEnd++
	l.onEnd[id] = f
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		delete(l.onEnd, id)
		l.mu.Unlock()
	}
}

func (l *lease) lose(err error) {
	if l.finish(err, false) {
		l.c.untrack(l)
		l.c.opts.Observer.Lost(context.WithoutCancel(l.obsCtx), LostEvent{Kind: l.kind, Key: l.key, Acquired: l.acquired, Err: err})
		l.c.opts.Logger.Warn("dlock: lease lost", "kind", l.kind, "key", l.key, "err", err)
	}
}

// Extend renews the lease for ttl from now (all of it, for a multi-lock).
// When any part is no longer held, the rest is released and the lease ends.
func (l *lease) doExtend(ctx context.Context, ttl time.Duration) error {
	if ttl <= 0 {
		return invalid("ttl %v <= 0", ttl)
	}
	l.mu.Lock()
	ended, why := l.ended, l.err
	l.mu.Unlock()
	if ended {
		return fmt.Errorf("%w: %w", ErrNotHeld, why)
	}
	// The call is bounded by the lease's end: while it runs it holds emu,
	// and the watchdog cannot declare the lease lost.
	l.emu.Lock()
	l.mu.Lock()
	lossAt := l.deadline.Add(-lossMargin(l.ttl))
	l.mu.Unlock()
	ectx, cancel := context.WithDeadline(ctx, lossAt)
	sent := time.Now()
	ok, err := l.extend(ectx, ttl)
	if err == nil && ok {
		l.renewed(sent, ttl)
	}
	l.emu.Unlock()
	late := ectx.Err() != nil && ctx.Err() == nil
	cancel()
	if err != nil {
		if late {
			// The extend may still reach Redis and hold the keys for ttl:
			// give back what is ours, off the caller's path.
			err = fmt.Errorf("%w: not renewed before the lease ended: %w", ErrLost, err)
			l.lose(err)
			l.c.goTracked(func() {
				ctx, cancel := l.c.detached(l.obsCtx)
				defer cancel()
				l.release(ctx)
			})
		}
		return err
	}
	if !ok {
		l.doRelease(context.WithoutCancel(ctx), fmt.Errorf("%w: extend found it taken", ErrNotHeld))
		return ErrNotHeld
	}
	l.c.opts.Observer.Extended(ctx, ExtendEvent{Kind: l.kind, Key: l.key})
	return nil
}

// doRelease runs the release script once, on ctx, and ends the lease with
// why. Release passes the caller's context without its cancellation
// (bounded by the client's own network timeouts; no extra goroutine on
// this hot path); Close passes its own deadline.
func (l *lease) doRelease(ctx context.Context, why error) error {
	if !l.finish(why, true) {
		return ErrNotHeld
	}
	l.c.untrack(l)
	l.c.opts.Observer.Released(ctx, ReleaseEvent{Kind: l.kind, Key: l.key, Acquired: l.acquired})
	n, total, err := l.release(ctx)
	switch {
	case err != nil:
		return err
	case n < total:
		return ErrNotHeld
	}
	return nil
}

func (l *lease) errNow() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
