package dlockrt

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// Lock is a held lock on one key. Its lease is renewed by a watchdog until
// Release (unless the watchdog is off). Methods on a nil *Lock return
// ErrNotHeld or zero values; they never panic.
type Lock struct {
	key   string
	token int64
	set   *lockset
	leaseHandle
}

// Once tries to take the lock on key: once, plus the configured retries.
// When somebody else holds it, it returns an error matching ErrNotAcquired;
// when Redis cannot be reached, one matching ErrUnavailable. It never waits
// past ctx. It takes WithTTL, WithRetries and WithWatchdog; any other
// option is an ErrInvalid error.
//
// A grant whose reply arrives after its lease would have ended (the
// process was paused, the network held the reply) is never returned: it is
// asked for again (the same grant, renewed, if the key is still the
// caller's), and after three late replies in a row given back and
// reported as an ErrUnavailable error. A returned lock's lease is live.
// The same holds for Lock, Multi and a semaphore's permits.
func (c *Client) Once(ctx context.Context, key string, opts ...Option) (*Lock, error) {
	set, cfg, err := c.prepare("Once", onceOpts, []string{key}, opts)
	if err != nil {
		return nil, err
	}
	h, _, err := set.tryRetrying(ctx, cfg)
	switch {
	case err != nil:
		return nil, err
	case h == nil:
		c.opts.Observer.NotAcquired(ctx, NotAcquiredEvent{Kind: KindLock, Key: key})
		return nil, ErrNotAcquired
	}
	return h.single(), nil
}

// prepare checks a lock call's arguments and lays out its keys.
func (c *Client) prepare(call string, takes optSet, keys []string, opts []Option) (*lockset, callConfig, error) {
	if err := c.check(); err != nil {
		return nil, callConfig{}, err
	}
	cfg, err := c.callConfig(call, takes, opts)
	if err != nil {
		return nil, cfg, err
	}
	set, err := c.newLockset(keys)
	return set, cfg, err
}

// Lock waits until it holds the lock on key or ctx ends. While the lock is
// held by others it sleeps until their release is announced (over the
// client's subscription) or their lease ends, whichever comes first; it
// never polls. When ctx ends first, the error matches ErrNotAcquired and
// ctx.Err(); when Redis cannot be reached, or a grant came back late three
// times in a row (see Once), it matches ErrUnavailable. It takes WithTTL and
// WithWatchdog (its context bounds the wait); any other option is an
// ErrInvalid error.
func (c *Client) Lock(ctx context.Context, key string, opts ...Option) (*Lock, error) {
	set, cfg, err := c.prepare("Lock", lockOpts, []string{key}, opts)
	if err != nil {
		return nil, err
	}
	// The fast path, unless others of this process already wait for the
	// key: then it is surely held, and the newcomer queues behind them.
	c.tmu.Lock()
	queued := c.turnstiles[key] != nil
	c.tmu.Unlock()
	if !queued {
		h, _, err := set.tryOnce(ctx, cfg)
		if err != nil || h != nil {
			if h != nil {
				return h.single(), nil
			}
			return nil, err
		}
	}
	// Contended: wait behind this process's other waiters for the key, so
	// that a release wakes one try per process, not one per goroutine.
	ts, err := c.enterTurnstile(ctx, key)
	if err != nil {
		return nil, notAcquiredBy(ctx, err)
	}
	acquired := false
	defer func() { c.leaveTurnstile(key, ts, acquired) }()
	c.tmu.Lock()
	sub, handedOff := ts.sub, ts.handedOff
	c.tmu.Unlock()
	if sub == nil {
		if testHookLockWait != nil {
			testHookLockWait(key)
		}
		// Subscribe, then try again before waiting: a release between the
		// failed try and the subscription is seen by that try.
		if sub, err = c.mux.subscribe(ctx, set.groups[0].channel); err != nil {
			return nil, notAcquiredBy(ctx, err)
		}
		c.tmu.Lock()
		ts.sub = sub
		c.tmu.Unlock()
		handedOff = false
	}
	// When the previous head of the line left holding the lock, the
	// subscription has been live since before it acquired, so its release
	// cannot be missed: wait for it rather than try in vain.
	wait := cfg.ttl
	for try := !handedOff; ; try = true {
		if c.closed.Load() {
			return nil, ErrClosed
		}
		if try {
			h, a, err := set.tryOnce(ctx, cfg)
			if err != nil {
				return nil, err
			}
			if h != nil {
				acquired = true
				return h.single(), nil
			}
			if wait = a.wait; wait < 0 {
				wait = cfg.ttl
			}
		}
		if testHookLockSleep != nil {
			testHookLockSleep(key)
		}
		t := time.NewTimer(wait + time.Millisecond)
		select {
		case <-sub.C:
		case <-t.C:
		case <-c.bg.Done(): // Close: the next iteration says so
		case <-ctx.Done():
			t.Stop()
			c.opts.Observer.NotAcquired(ctx, NotAcquiredEvent{Kind: KindLock, Key: key})
			return nil, notAcquiredBy(ctx, ctx.Err())
		}
		t.Stop()
	}
}

// turnstile lines up this process's waiters for one key: only the head
// retries in Redis, the others wait their turn here (in arrival order).
// Successive heads share one subscription to the key's channel. Its fields
// are protected by Client.tmu.
type turnstile struct {
	turn      chan struct{} // cap 1: holding its slot is being the head
	refs      int           // waiters using it
	sub       *subscription // the key's channel, while anyone waits
	handedOff bool          // the last head left holding the lock
}

// enterTurnstile waits until the caller is the head of the key's local
// line, or ctx ends.
func (c *Client) enterTurnstile(ctx context.Context, key string) (*turnstile, error) {
	c.tmu.Lock()
	ts := c.turnstiles[key]
	if ts == nil {
		ts = &turnstile{turn: make(chan struct{}, 1)}
		c.turnstiles[key] = ts
	}
	ts.refs++
	c.tmu.Unlock()
	var err error
	select {
	case ts.turn <- struct{}{}:
		return ts, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-c.bg.Done():
		err = ErrClosed
	}
	c.tmu.Lock()
	ts.refs--
	c.dropTurnstileLocked(key, ts)
	c.tmu.Unlock()
	return nil, err
}

// leaveTurnstile makes the next waiter the head; the last one out closes
// the subscription.
func (c *Client) leaveTurnstile(key string, ts *turnstile, acquired bool) {
	c.tmu.Lock()
	ts.handedOff = acquired
	ts.refs--
	c.dropTurnstileLocked(key, ts)
	c.tmu.Unlock()
	<-ts.turn
}

func (c *Client) dropTurnstileLocked(key string, ts *turnstile) {
	if ts.refs > 0 {
		return
	}
	delete(c.turnstiles, key)
	if ts.sub != nil {
		ts.sub.close()
		ts.sub = nil
	}
}

// testHookLockWait, when set by a test, runs after Lock's first failed
// attempt and before it subscribes.
var testHookLockWait func(key string)

// testHookLockSleep, when set by a test, runs each time a subscribed Lock
// waiter goes to sleep until a release, its timer or its context.
var testHookLockSleep func(key string)

// notAcquiredBy reports that waiting ended because ctx did; other errors
// pass through.
func notAcquiredBy(ctx context.Context, err error) error {
	if ctx.Err() != nil && err == ctx.Err() {
		return fmt.Errorf("%w: %w", ErrNotAcquired, err)
	}
	return err
}

// held is an acquired lockset and its lease.
type held struct {
	set    *lockset
	tokens []int64
	lease  *lease
}

func (h *held) single() *Lock {
	return &Lock{key: h.set.keys[0], token: h.tokens[0], set: h.set, leaseHandle: leaseHandle{h.lease}}
}

// tryOnce makes one attempt; it returns a held lockset, or the attempt
// that says who holds what.
func (s *lockset) tryOnce(ctx context.Context, cfg callConfig) (*held, attempt, error) {
	for late := 1; ; late++ {
		sent := time.Now()
		a, err := s.try(ctx, cfg.ttl)
		if err != nil || a.tokens == nil {
			return nil, a, err
		}
		// A grant that came too late to be trusted (see lapsed) is asked
		// for again by the same owner: the script returns the same grant,
		// renewed, while the keys are still ours, or grants them afresh
		// (a larger token) if they are free, or says who holds them now.
		if late < maxLateGrants && lapsed(sent, cfg.ttl) != nil {
			continue
		}
		l, err := s.hold(ctx, cfg, sent)
		if err != nil {
			return nil, a, err
		}
		return &held{set: s, tokens: a.tokens, lease: l}, a, nil
	}
}

// tryRetrying makes the first attempt and cfg.retries more.
func (s *lockset) tryRetrying(ctx context.Context, cfg callConfig) (*held, attempt, error) {
	for i := 0; ; i++ {
		h, a, err := s.tryOnce(ctx, cfg)
		if err != nil || h != nil || i >= cfg.retries {
			return h, a, err
		}
		pause := cfg.delay/2 + rand.N(cfg.delay+1)
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, a, notAcquiredBy(ctx, ctx.Err())
		}
	}
}

// Key is the user key the lock is on.
func (l *Lock) Key() string {
	if l == nil {
		return ""
	}
	return l.key
}

// Token is the lock's fencing token: every newer holder of the key gets a
// larger one, even after the counter expired. Pass it to the resource the
// lock protects and have it reject tokens older than the newest it saw;
// that is the defence against a holder that paused past its lease.
func (l *Lock) Token() int64 {
	if l == nil {
		return 0
	}
	return l.token
}
