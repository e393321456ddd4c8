package dlockrt

import (
	"context"
	"slices"
)

// MultiLock holds several keys at once, all or nothing. In a Cluster, keys
// of one slot are taken by one script, and slots in ascending order, so two
// multi-locks over overlapping keys never deadlock. Methods on a nil
// *MultiLock return ErrNotHeld or zero values.
type MultiLock struct {
	tokens []int64
	set    *lockset
	leaseHandle
}

// Multi takes the locks on every key, or none: when any key is held by
// others the error is a *MultiLockError naming them (it matches
// ErrNotAcquired) and nothing stays held. Duplicate keys count once. It
// uses the client's default TTL, retries and watchdog; MultiWith takes
// options.
func (c *Client) Multi(ctx context.Context, keys ...string) (*MultiLock, error) {
	return c.MultiWith(ctx, keys)
}

// MultiWith is Multi with options: WithTTL, WithRetries and WithWatchdog;
// any other is an ErrInvalid error.
func (c *Client) MultiWith(ctx context.Context, keys []string, opts ...Option) (*MultiLock, error) {
	set, cfg, err := c.prepare("Multi", onceOpts, keys, opts)
	if err != nil {
		return nil, err
	}
	h, a, err := set.tryRetrying(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if h == nil {
		c.opts.Observer.NotAcquired(ctx, NotAcquiredEvent{Kind: KindMulti, Key: set.keys[0]})
		return nil, &MultiLockError{Keys: a.held}
	}
	return &MultiLock{tokens: h.tokens, set: set, leaseHandle: leaseHandle{h.lease}}, nil
}

// Keys are the locked keys in canonical order (duplicates removed).
func (m *MultiLock) Keys() []string {
	if m == nil {
		return nil
	}
	return slices.Clone(m.set.keys)
}

// Tokens are the fencing tokens of Keys, in the same order.
func (m *MultiLock) Tokens() []int64 {
	if m == nil {
		return nil
	}
	return slices.Clone(m.tokens)
}
