package dlockrt

import (
	"context"
	"time"
)

// leaseHandle is what Lock, MultiLock and Permit share: the lease they
// hold, and the methods on it. Each handle's methods are nil-safe: on a
// nil handle they go to a nil *leaseHandle, which holds nothing.
type leaseHandle struct{ lease *lease }

func (h *leaseHandle) done() <-chan struct{} {
	if h == nil {
		return closedChan
	}
	return h.lease.done
}

func (h *leaseHandle) err() error {
	if h == nil {
		return ErrNotHeld
	}
	return h.lease.errNow()
}

func (h *leaseHandle) extend(ctx context.Context, ttl time.Duration) error {
	if h == nil {
		return ErrNotHeld
	}
	return h.lease.doExtend(ctx, ttl)
}

// release runs without ctx's cancellation (bounded by the Redis client's
// own timeouts): a release must not be abandoned half way.
func (h *leaseHandle) release(ctx context.Context) error {
	if h == nil {
		return ErrNotHeld
	}
	return h.lease.doRelease(context.WithoutCancel(ctx), errReleased)
}

// context is cancelled when the lease ends, with its error as the cause,
// or when parent is; token, if not nil, is carried for TokenFromContext.
// It costs no goroutine while the lease is held.
func (h *leaseHandle) context(parent context.Context, token *int64) (context.Context, context.CancelFunc) {
	if h == nil {
		ctx, cancel := context.WithCancelCause(parent)
		cancel(ErrNotHeld)
		return ctx, func() {}
	}
	if token != nil {
		parent = context.WithValue(parent, tokenKey{}, *token)
	}
	ctx, cancel := context.WithCancelCause(parent)
	stop := h.lease.afterEnd(func(err error) { cancel(err) })
	stopAfter := context.AfterFunc(ctx, stop) // parent or CancelFunc: unregister
	return ctx, func() {
		cancel(context.Canceled)
		stopAfter()
		stop()
	}
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (l *Lock) handle() *leaseHandle {
	if l == nil {
		return nil
	}
	return &l.leaseHandle
}

func (m *MultiLock) handle() *leaseHandle {
	if m == nil {
		return nil
	}
	return &m.leaseHandle
}

func (p *Permit) handle() *leaseHandle {
	if p == nil {
		return nil
	}
	return &p.leaseHandle
}

// Done is closed when the lease ends: released, lost (the watchdog could
// not renew it in time, or another holder has it), or the client closed.
// After it is closed, Err says why.
func (l *Lock) Done() <-chan struct{} { return l.handle().done() }

// Err is nil while the lock is held. After Done is closed it matches
// ErrLost when the lease was lost, ErrNotHeld after Release, ErrClosed after
// the client closed.
func (l *Lock) Err() error { return l.handle().err() }

// Extend renews the lease for ttl from now. It returns ErrNotHeld when the
// lock is no longer the caller's (then the lock has ended), and an
// ErrUnavailable error when Redis did not answer (then the lease runs on,
// and the watchdog, if on, keeps trying). The call is bounded by the
// lease's end: when no answer comes before the lease would end, the lease
// is lost, the error matches ErrLost, and the lock has ended.
func (l *Lock) Extend(ctx context.Context, ttl time.Duration) error {
	return l.handle().extend(ctx, ttl)
}

// Release gives the lock up and wakes a waiter. It runs even when ctx has
// already ended (without ctx's cancellation, bounded by the Redis client's
// own timeouts). It returns ErrNotHeld when the lock was no longer the
// caller's (its lease ran out and maybe someone else holds it now: nothing
// of theirs was touched) or was released before.
func (l *Lock) Release(ctx context.Context) error { return l.handle().release(ctx) }

// Context returns a context derived from parent that carries the lock's
// fencing token (TokenFromContext) and is cancelled, with the lease's error
// as its cause, when the lock ends. Call the CancelFunc when done.
func (l *Lock) Context(parent context.Context) (context.Context, context.CancelFunc) {
	if l == nil {
		return l.handle().context(parent, nil)
	}
	return l.handle().context(parent, &l.token)
}

// Done is closed when the multi-lock ends (see Lock.Done).
func (m *MultiLock) Done() <-chan struct{} { return m.handle().done() }

// Err says why the multi-lock ended (see Lock.Err).
func (m *MultiLock) Err() error { return m.handle().err() }

// Extend renews every key's lease for ttl from now. If any key is no longer
// held, the others are released, the lock ends, and it returns ErrNotHeld.
// When no answer comes before the lease would end, the lease is lost: the
// error matches ErrLost and the lock has ended.
func (m *MultiLock) Extend(ctx context.Context, ttl time.Duration) error {
	return m.handle().extend(ctx, ttl)
}

// Release releases every key still held by the caller. It returns
// ErrNotHeld when some key was no longer the caller's (the others are still
// released). Like Lock.Release it runs even when ctx has ended.
func (m *MultiLock) Release(ctx context.Context) error { return m.handle().release(ctx) }

// Context returns a context derived from parent that carries the first
// key's fencing token (TokenFromContext) and is cancelled, with the lease's
// error as its cause, when the multi-lock ends. Call the CancelFunc when
// done.
func (m *MultiLock) Context(parent context.Context) (context.Context, context.CancelFunc) {
	if m == nil {
		return m.handle().context(parent, nil)
	}
	return m.handle().context(parent, &m.tokens[0])
}

// Done is closed when the permit ends: released, lost, or the client closed.
func (p *Permit) Done() <-chan struct{} { return p.handle().done() }

// Err says why the permit ended (see Lock.Err).
func (p *Permit) Err() error { return p.handle().err() }

// Extend renews the permit's lease for ttl from now; ErrNotHeld when it is
// no longer held. When no answer comes before the lease would end, the
// lease is lost: the error matches ErrLost and the permit has ended.
func (p *Permit) Extend(ctx context.Context, ttl time.Duration) error {
	return p.handle().extend(ctx, ttl)
}

// Release gives the permit back and wakes the waiters. Releasing twice, or
// a permit whose lease ended, changes nothing and returns ErrNotHeld. It
// runs even when ctx has ended.
func (p *Permit) Release(ctx context.Context) error { return p.handle().release(ctx) }

// Context returns a context derived from parent that is cancelled, with
// the lease's error as its cause, when the permit ends. Call the
// CancelFunc when done.
func (p *Permit) Context(parent context.Context) (context.Context, context.CancelFunc) {
	return p.handle().context(parent, nil)
}
