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
