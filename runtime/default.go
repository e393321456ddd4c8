package dlockrt

import (
	"context"
	"errors"
	"sync/atomic"
)

var defaultClient atomic.Pointer[Client]

// ErrNoDefault: a generated package-level wrapper ran before SetDefault.
var ErrNoDefault = errors.New("dlock: no default client: call dlockrt.SetDefault at start-up")

// SetDefault sets the client that generated package-level wrappers use.
// Call it once at start-up, before any wrapper runs; nil unsets it.
func SetDefault(c *Client) { defaultClient.Store(c) }

// Default returns the client set by SetDefault, or ErrNoDefault.
func Default() (*Client, error) {
	if c := defaultClient.Load(); c != nil {
		return c, nil
	}
	return nil, ErrNoDefault
}

type tokenKey struct{}

// TokenFromContext returns the fencing token of the lock that a generated
// //dlock:once wrapper holds while it runs the wrapped function (or of any
// context made by Lock.Context).
func TokenFromContext(ctx context.Context) (int64, bool) {
	t, ok := ctx.Value(tokenKey{}).(int64)
	return t, ok
}

// Context returns a context derived from parent that carries the lock's
// fencing token (TokenFromContext) and is cancelled, with the lease's error
// as its cause, when the lock ends. Call the CancelFunc when done.
func (l *Lock) Context(parent context.Context) (context.Context, context.CancelFunc) {
	if l == nil {
		ctx, cancel := context.WithCancelCause(parent)
		cancel(ErrNotHeld)
		return ctx, func() {}
	}
	return leaseContext(context.WithValue(parent, tokenKey{}, l.token), l.lease)
}

// Context returns a context derived from parent that is cancelled, with
// the lease's error as its cause, when the permit ends. Call the CancelFunc
// when done.
func (p *Permit) Context(parent context.Context) (context.Context, context.CancelFunc) {
	if p == nil {
		ctx, cancel := context.WithCancelCause(parent)
		cancel(ErrNotHeld)
		return ctx, func() {}
	}
	return leaseContext(parent, p.lease)
}

// leaseContext is cancelled when the lease ends, with its error as the
// cause, or when parent is; it costs no goroutine while the lease is held.
func leaseContext(parent context.Context, l *lease) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	stop := l.afterEnd(func(err error) { cancel(err) })
	stopAfter := context.AfterFunc(ctx, stop) // parent or CancelFunc: unregister
	return ctx, func() {
		cancel(context.Canceled)
		stopAfter()
		stop()
	}
}

// Context returns a context derived from parent that carries the first
// key's fencing token (TokenFromContext) and is cancelled, with the lease's
// error as its cause, when the multi-lock ends. Call the CancelFunc when
// done.
func (m *MultiLock) Context(parent context.Context) (context.Context, context.CancelFunc) {
	if m == nil {
		ctx, cancel := context.WithCancelCause(parent)
		cancel(ErrNotHeld)
		return ctx, func() {}
	}
	return leaseContext(context.WithValue(parent, tokenKey{}, m.tokens[0]), m.lease)
}
